"""The shipped molecule set: SMILES in, space-separated SELFIES and token-id batches out."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch


def default_molecules_path() -> Path:
    """Path of the shipped 24,147-molecule SMILES file (see ``scmt/data/NOTICE.md``)."""
    return Path(str(resources.files("scmt") / "data" / "molecules.smi.csv"))


def read_smiles(path: str | Path | None = None, column: str = "SMILES", limit: int | None = None) -> list[str]:
    """Read the non-empty values of ``column`` from a CSV file (default: the shipped set)."""
    path = Path(path) if path is not None else default_molecules_path()
    if not path.is_file():
        raise FileNotFoundError(f"molecule file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise ValueError(f"molecule file {path} is empty: expected a CSV header with a {column!r} column")
        if column not in reader.fieldnames:
            raise ValueError(
                f"molecule file {path} has no column {column!r} (columns: {', '.join(reader.fieldnames)}): "
                f"pass the column that holds the SMILES"
            )
        smiles = []
        for row in reader:
            value = (row.get(column) or "").strip()
            if value:
                smiles.append(value)
            if limit is not None and len(smiles) >= limit:
                break
    if not smiles:
        raise ValueError(f"molecule file {path} has no molecules in column {column!r}")
    return smiles


@dataclass
class SelfiesConversion:
    """SELFIES strings (symbols separated by spaces) and the SMILES that failed to convert."""

    selfies: list[str]
    source_smiles: list[str]
    failed: list[str] = field(default_factory=list)


def smiles_to_selfies(smiles: list[str]) -> SelfiesConversion:
    """Convert SMILES with the ``selfies`` package; failures are collected, not dropped silently."""
    import selfies

    converted, sources, failed = [], [], []
    for item in smiles:
        try:
            encoded = selfies.encoder(item)
        except selfies.EncoderError:
            failed.append(item)
            continue
        if not encoded:
            failed.append(item)
            continue
        converted.append(" ".join(selfies.split_selfies(encoded)))
        sources.append(item)
    return SelfiesConversion(selfies=converted, source_smiles=sources, failed=failed)


def pad_batch(sequences: list[list[int]], length: int, pad_id: int) -> tuple[torch.Tensor, int]:
    """B×length int64 batch, right-padded with ``pad_id``; also return how many rows were truncated."""
    batch = torch.full((len(sequences), length), pad_id, dtype=torch.int64)
    truncated = 0
    for row, ids in enumerate(sequences):
        if len(ids) > length:
            truncated += 1
            ids = ids[:length]
        batch[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return batch, truncated
