"""Feeding a sequence in pieces, and the published one-token-a-call generation path."""

from __future__ import annotations

import pytest
import torch

from scmt.legacy import reference_generate, reference_path_logits, sample_next_token

from .conftest import make_model

# Measured on the reference default config: pieces differ from one full pass by
# at most about 2e-6 (float reordering in the cached attention); 1e-4 leaves room.
PIECE_TOLERANCE = 1e-4


@pytest.mark.parametrize("mem_size", [128, 4])
@pytest.mark.parametrize("pieces", [1, 3, 7, [2, 5, 11, 22]])
def test_strict_pieces_match_full_pass(molecule_ids, mem_size, pieces):
    model = make_model("strict", seed=4, mem_size=mem_size)
    rows = [ids[:40] for ids in molecule_ids if len(ids) >= 40][:3]
    input_ids = torch.tensor(rows)
    with torch.no_grad():
        full = model(input_ids)
        logits = model.forward_in_pieces(input_ids, pieces)
    assert (logits - full.logits).abs().max().item() < PIECE_TOLERANCE


def test_strict_pieces_carry_same_memory(molecule_ids):
    model = make_model("strict", seed=4, mem_size=4)
    input_ids = torch.tensor([ids[:40] for ids in molecule_ids if len(ids) >= 40][:2])
    with torch.no_grad():
        full = model(input_ids, use_cache=True)
        first = model(input_ids[:, :17], use_cache=True)
        second = model(input_ids[:, 17:], past_state=first.state, use_cache=True)
    assert second.state.length == 40
    assert torch.equal(second.memory.timestamps, full.memory.timestamps)
    assert torch.allclose(second.memory.keys, full.memory.keys, atol=1e-5)


def test_legacy_pieces_differ_from_full_pass(molecule_ids):
    # Legacy normalises entropy per call, so the pieces see a different model.
    model = make_model("legacy", seed=4, mem_size=8)
    input_ids = torch.tensor([ids[:40] for ids in molecule_ids if len(ids) >= 40][:2])
    with torch.no_grad():
        full = model(input_ids).logits
        pieces = model.forward_in_pieces(input_ids, 5)
    assert (pieces - full).abs().max().item() > 1e-3


def test_reference_path_equals_one_token_forward(molecule_ids):
    model = make_model("legacy", seed=6)
    input_ids = torch.tensor([molecule_ids[0][:12]])
    with torch.no_grad():
        path = reference_path_logits(model, input_ids, prompt_length=4)
        prompt = model(input_ids[:, :4], step_mode=True, position_offset=4)
        assert torch.allclose(path[:, :4], prompt.logits, atol=1e-6)
        step = model(input_ids[:, 4:5], memory=prompt.memory, step_mode=True, position_offset=5)
    assert torch.allclose(path[:, 4], step.logits[:, 0], atol=1e-6)


def test_reference_path_drifts_from_teacher_forcing(molecule_ids):
    model = make_model("legacy", seed=6)
    input_ids = torch.tensor([ids[:30] for ids in molecule_ids if len(ids) >= 30][:4])
    with torch.no_grad():
        full = model(input_ids).logits
        path = reference_path_logits(model, input_ids, prompt_length=1)
    # Each new token is encoded alone, so later positions see a different model.
    assert (path[:, 1:] - full[:, 1:]).abs().max().item() > 1e-2


def test_reference_generate_is_seeded():
    model = make_model("legacy", seed=7, vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4)
    prompt = torch.tensor([[0, 10, 11, 12]])
    sampling = dict(temperature=0.9, top_k=20, top_p=0.9, repetition_penalty=1.2)
    first = reference_generate(model, prompt, 10, generator=torch.Generator().manual_seed(3), **sampling)
    second = reference_generate(model, prompt, 10, generator=torch.Generator().manual_seed(3), **sampling)
    assert first.shape == (1, 14)
    assert torch.equal(first, second)
    assert torch.equal(first[:, :4], prompt)


def test_repetition_penalty_divides_whatever_sign():
    logits = torch.tensor([[2.0, -2.0, 1.0]])
    generated = torch.tensor([[0, 1]])
    # With top_k=1 the draw is the argmax of the penalised logits: 2/4=0.5 and -2/4=-0.5 lose to 1.0.
    token = sample_next_token(logits, generated, top_k=1, repetition_penalty=4.0)
    assert token.item() == 2
