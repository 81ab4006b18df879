"""Strict mode is exactly causal on real molecules; legacy mode is not.

Each trial cuts a real sequence at k and replaces positions >= k (random
tokens, another molecule's suffix, or padding). In strict mode the logits
before k must not move at all: the model's masked sums add exact zeros, so
the comparison is exact, not within a tolerance.
"""

from __future__ import annotations

import pytest
import torch

from scmt.molecules import pad_batch

from .conftest import make_model

PAD = 2


def perturbed_batches(ids: list[int], donor: list[int], vocab_size: int, generator: torch.Generator):
    """Yield (kind, B×n batch, cuts): row i replaces the suffix from cut i+1 onward."""
    n = len(ids)
    base = torch.tensor(ids).expand(n - 1, n).clone()
    cuts = torch.arange(1, n)
    random_rows = base.clone()
    donor_rows = base.clone()
    pad_rows = base.clone()
    donor_tensor = torch.tensor((donor * (n // len(donor) + 2))[:n])
    for row, cut in enumerate(cuts.tolist()):
        random_rows[row, cut:] = torch.randint(5, vocab_size, (n - cut,), generator=generator)
        donor_rows[row, cut:] = donor_tensor[cut:]
        pad_rows[row, cut:] = PAD
    yield "random", random_rows, cuts
    yield "donor", donor_rows, cuts
    yield "padding", pad_rows, cuts


def count_leaks(model, sequences, generator):
    """Return (leaking trials, trials, max |Δ logit| before the cut)."""
    leaks = trials = 0
    worst = 0.0
    with torch.no_grad():
        for index, ids in enumerate(sequences):
            # The clean run uses the same batch shape as the perturbed ones, so that
            # both take the same kernels and a difference can only come from the input.
            clean = model(torch.tensor(ids).expand(len(ids) - 1, -1).contiguous()).logits
            donor = sequences[(index + 1) % len(sequences)]
            for _, batch, cuts in perturbed_batches(ids, donor, model.config.vocab_size, generator):
                logits = model(batch).logits
                for row, cut in enumerate(cuts.tolist()):
                    delta = (logits[row, :cut] - clean[row, :cut]).abs().max().item()
                    trials += 1
                    leaks += delta > 0
                    worst = max(worst, delta)
    return leaks, trials, worst


@pytest.mark.parametrize("mem_size", [128, 4])
def test_strict_logits_ignore_every_suffix(molecule_ids, mem_size):
    model = make_model("strict", seed=11, mem_size=mem_size)
    sequences = [ids for ids in molecule_ids[:40] if len(ids) >= 30][:6]
    leaks, trials, worst = count_leaks(model, sequences, torch.Generator().manual_seed(0))
    assert trials > 300
    assert leaks == 0, f"{leaks}/{trials} trials moved past logits, by up to {worst}"


@pytest.mark.parametrize("mem_size", [128, 4])
def test_legacy_logits_leak(molecule_ids, mem_size):
    model = make_model("legacy", seed=11, mem_size=mem_size)
    sequences = [ids for ids in molecule_ids[:40] if len(ids) >= 30][:3]
    leaks, trials, worst = count_leaks(model, sequences, torch.Generator().manual_seed(0))
    assert leaks > trials // 10
    assert worst > 1e-4


def test_strict_padded_batch_is_causal(molecule_ids):
    model = make_model("strict", seed=5, mem_size=8)
    batch, _ = pad_batch(molecule_ids[:8], 90, PAD)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        clean = model(batch).logits
        for cut in (1, 7, 33, 60, 89):
            perturbed = batch.clone()
            perturbed[:, cut:] = torch.randint(5, 793, (8, 90 - cut), generator=generator)
            assert torch.equal(model(perturbed).logits[:, :cut], clean[:, :cut]), f"cut {cut}"


@pytest.mark.parametrize("mem_size", [128, 4])
def test_strict_past_logits_have_no_future_gradient(molecule_ids, mem_size):
    model = make_model("strict", seed=2, mem_size=mem_size)
    ids = torch.tensor([next(ids for ids in molecule_ids if len(ids) >= 40)[:40]])
    embeds = model.embed(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    for cut in (1, 10, 25, 39):
        (grad,) = torch.autograd.grad(logits[:, :cut].sum(), embeds, retain_graph=True)
        assert grad[:, cut:].abs().max().item() == 0.0, f"cut {cut}"
        assert grad[:, :cut].abs().max().item() > 0.0, f"cut {cut}: no gradient at all"


def test_strict_per_position_loss_has_no_future_gradient(molecule_ids):
    model = make_model("strict", seed=2, mem_size=4)
    ids = torch.tensor([[i for i in molecule_ids if len(i) >= 40][1][:40]])
    embeds = model.embed(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds).logits
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
    for cut in (5, 20):
        # The loss at position t scores token t + 1, so it may see inputs <= t only.
        (grad,) = torch.autograd.grad(loss[:cut].sum(), embeds, retain_graph=True)
        assert grad[:, cut:].abs().max().item() == 0.0, f"cut {cut}"


@pytest.mark.parametrize(
    "switch", ["prefix_entropy_norm", "read_as_of_step", "zero_empty_read", "carry_write_times"]
)
def test_each_switch_alone_is_not_strict(molecule_ids, switch):
    # One fix alone leaves the other leaks: only the full preset is exactly causal.
    model = make_model(None, seed=11, mem_size=4, **{switch: True})
    assert model.config.causal_mode == "custom"
    sequences = [ids for ids in molecule_ids[:40] if len(ids) >= 30][:2]
    leaks, trials, _ = count_leaks(model, sequences, torch.Generator().manual_seed(0))
    assert leaks > 0
