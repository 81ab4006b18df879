"""Shared fixtures: real molecules, the golden reference fixtures, small seeded models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scmt import SCMTConfig, SCMTForCausalLM
from scmt.molecules import read_smiles, smiles_to_selfies
from scmt.tokenization import NgramTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
REFERENCE_FIXTURES = SHARED / "fixtures" / "reference-v0.1.2"


def reference_fixture(name: str) -> dict:
    path = REFERENCE_FIXTURES / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"golden fixture {path} is absent (it lives in ../shared beside the repository)")
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="session")
def tokenizer() -> NgramTokenizer:
    return NgramTokenizer.from_file()


@pytest.fixture(scope="session")
def molecule_ids(tokenizer) -> list[list[int]]:
    """Token ids (with <s> and </s>) of the first 200 shipped molecules that convert to SELFIES."""
    conversion = smiles_to_selfies(read_smiles(limit=200))
    return [tokenizer.encode(text) for text in conversion.selfies]


def make_model(mode: str | None = "strict", seed: int = 0, **overrides) -> SCMTForCausalLM:
    """A seeded, randomly initialised model at the reference default config unless overridden.

    ``mode=None`` leaves the causal switches to ``overrides`` (all off by default).
    """
    torch.manual_seed(seed)
    values = dict(vocab_size=793)
    if mode is not None:
        values["mode"] = mode
    values.update(overrides)
    return SCMTForCausalLM(SCMTConfig(**values)).eval()
