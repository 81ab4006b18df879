"""Corpora, seeded splits, fixed-length token batches and the held-out probe set."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .molecules import pad_batch, read_smiles, smiles_to_selfies

PROBE_SET_FILE = "probe_set.json"


@dataclass
class Corpus:
    """Sequences ready for a tokenizer, with where they came from.

    Attributes:
        kind: ``"molecules"`` (SELFIES converted from SMILES) or ``"text"`` (one sequence a line).
        texts: the sequences (SELFIES strings without spaces, or text lines).
        source: path of the file they were read from.
        smiles: for molecules, the SMILES each SELFIES came from (for novelty checks).
        failed: for molecules, SMILES that did not convert to SELFIES.
    """

    kind: str
    texts: list[str]
    source: str
    smiles: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def load_molecules(path: str | Path | None = None, column: str = "SMILES", limit: int | None = None) -> Corpus:
    """Read SMILES (default: the shipped set) and convert them to SELFIES, counting failures."""
    smiles = read_smiles(path, column=column, limit=limit)
    conversion = smiles_to_selfies(smiles)
    if not conversion.selfies:
        raise ValueError(f"none of the {len(smiles)} SMILES in {path} converted to SELFIES: check the column")
    texts = [text.replace(" ", "") for text in conversion.selfies]
    source = str(path) if path is not None else "shipped:molecules.smi.csv"
    return Corpus("molecules", texts, source, smiles=conversion.source_smiles, failed=conversion.failed)


def load_text(path: str | Path, limit: int | None = None) -> Corpus:
    """Read a text corpus, one sequence a non-empty line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text corpus not found: {path}")
    lines = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                lines.append(line)
            if limit is not None and len(lines) >= limit:
                break
    if not lines:
        raise ValueError(f"text corpus {path} has no non-empty lines")
    return Corpus("text", lines, str(path))


def split_indices(count: int, seed: int, eval_fraction: float = 0.1) -> tuple[list[int], list[int]]:
    """Seeded random split of ``range(count)`` into (train, eval), like ``torch.utils.data.random_split``."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"invalid eval_fraction={eval_fraction}: it must lie strictly between 0 and 1")
    eval_size = max(1, round(count * eval_fraction))
    if eval_size >= count:
        raise ValueError(f"a corpus of {count} sequences is too small to split: add data")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[eval_size:], order[:eval_size]


@dataclass
class EncodedSplit:
    """N×seq_len token ids, right-padded, and how many sequences were cut to fit."""

    input_ids: torch.Tensor
    truncated: int


def encode_texts(tokenizer, texts: list[str], seq_len: int) -> EncodedSplit:
    """Tokenise with special tokens, truncate to ``seq_len`` and right-pad with the pad id."""
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: use one of the project's tokenizers")
    encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
    batch, truncated = pad_batch(encoded, seq_len, tokenizer.pad_token_id)
    return EncodedSplit(batch, truncated)


class LanguageModelingDataset(Dataset):
    """Rows of a padded id tensor as ``{"input_ids", "labels"}``; pads are inputs but not targets."""

    def __init__(self, input_ids: torch.Tensor, pad_token_id: int) -> None:
        self.input_ids = input_ids
        self.labels = input_ids.masked_fill(input_ids == pad_token_id, -100)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[index], "labels": self.labels[index]}


def make_probe_set(tokenizer, texts: list[str], seed: int, size: int = 256, seq_len: int | None = None) -> dict:
    """A fixed, seeded sample of held-out sequences with their token ids (unpadded)."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(texts), generator=generator)[: min(size, len(texts))].tolist()
    chosen = [texts[index] for index in sorted(order)]
    ids = tokenizer(chosen, add_special_tokens=True)["input_ids"]
    if seq_len is not None:
        ids = [row[:seq_len] for row in ids]
    return {"version": 1, "seed": seed, "texts": chosen, "input_ids": ids}


def save_probe_set(probe_set: dict, directory: str | Path) -> Path:
    path = Path(directory) / PROBE_SET_FILE
    path.write_text(json.dumps(probe_set), encoding="utf-8")
    return path


def load_probe_set(directory: str | Path) -> dict:
    """Read the probe set stored in a checkpoint or run directory."""
    path = Path(directory) / PROBE_SET_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: this checkpoint was not written by scmt.train; pass data explicitly")
    try:
        probe_set = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}): restore it from the run directory") from None
    if not isinstance(probe_set, dict) or "input_ids" not in probe_set:
        raise ValueError(f"{path} has no input_ids: restore it from the run directory")
    return probe_set
