"""The shipped demo runs: present, small, loadable, trained, and causal where they should be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scmt.checkpoint import load_checkpoint
from scmt.data import load_probe_set

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
RUNS = ["demo-legacy", "demo-strict", "demo-gpt2"]


def checkpoints_of(run: str) -> list[Path]:
    return sorted((CHECKPOINTS / run).glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))


def test_runs_fit_size_budget():
    total = sum(path.stat().st_size for path in CHECKPOINTS.rglob("*") if path.is_file())
    assert total < 20 * 1024 * 1024


@pytest.mark.parametrize("run", RUNS)
def test_run_has_three_checkpoints(run):
    assert len(checkpoints_of(run)) >= 3


@pytest.mark.parametrize("run", RUNS)
def test_last_checkpoint_loads_with_tokenizer(run):
    last = checkpoints_of(run)[-1]
    model = AutoModelForCausalLM.from_pretrained(last).eval()
    tokenizer = AutoTokenizer.from_pretrained(last)
    assert len(tokenizer) == model.config.vocab_size
    probe = load_probe_set(last)
    assert len(probe["input_ids"]) == 256


@pytest.mark.parametrize("run", RUNS)
def test_run_learned(run):
    history = json.loads((checkpoints_of(run)[-1] / "trainer_state.json").read_text())["log_history"]
    evaluations = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    # A uniform guess over the ~60 symbols costs about 4.1 nats; the runs must do far better.
    assert evaluations[-1] < 2.0
    assert evaluations[-1] < evaluations[0] + 1e-6


def probe_batch(checkpoint: Path, rows: int = 16) -> torch.Tensor:
    probe = load_probe_set(checkpoint)
    ids = [row for row in probe["input_ids"] if len(row) >= 30][:rows]
    length = min(len(row) for row in ids)
    return torch.tensor([row[:length] for row in ids])


def max_past_shift(model, batch: torch.Tensor, cut: int, seed: int) -> float:
    perturbed = batch.clone()
    generator = torch.Generator().manual_seed(seed)
    perturbed[:, cut:] = torch.randint(5, model.config.vocab_size, (batch.shape[0], batch.shape[1] - cut), generator=generator)
    with torch.no_grad():
        clean = model(batch).logits[:, :cut]
        moved = model(perturbed).logits[:, :cut]
    return (moved - clean).abs().max().item()


def test_strict_demo_is_exactly_causal():
    last = checkpoints_of("demo-strict")[-1]
    model = load_checkpoint(last)
    batch = probe_batch(last)
    for cut in range(1, batch.shape[1], 4):
        assert max_past_shift(model, batch, cut, seed=cut) == 0.0, f"cut {cut}"


def test_legacy_demo_leaks():
    last = checkpoints_of("demo-legacy")[-1]
    model = load_checkpoint(last)
    batch = probe_batch(last)
    shifts = [max_past_shift(model, batch, cut, seed=cut) for cut in range(1, batch.shape[1], 4)]
    assert max(shifts) > 1e-3
