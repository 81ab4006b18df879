"""Shared probe machinery: loading a checkpoint with its corpus, a batched recording pass,
and stored results with their provenance.

Results are written next to the checkpoint, in ``probe_results/NAME.json``
(format version ``RESULT_FORMAT``), with the checkpoint fingerprint, the data
fingerprint, the probe version and the seed. A stored result is reused while
all four match, and recomputed when any changes. When the checkpoint directory
is read-only, results go to ``$SCMT_LAB_CACHE`` (default
``~/.cache/scmt-lab``), under the checkpoint fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from scmt import SCMTForCausalLM, trace
from scmt.checkpoint import CheckpointError, load_checkpoint
from scmt.data import PROBE_SET_FILE, load_probe_set

from .targets import DEMO_RUNS, TargetError, _load_tokenizer, read_token_sequences

RESULT_FORMAT = 1
RESULTS_DIR = "probe_results"


def default_checkpoint() -> Path:
    """Return the last checkpoint of the shipped strict demo run."""
    run = DEMO_RUNS / "demo-strict"
    checkpoints = sorted(run.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    if not checkpoints:
        raise TargetError(f"no shipped demo checkpoint under {run}: pass a checkpoint directory")
    return checkpoints[-1]


def sha256_of_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass
class ProbeInput:
    """An SCMT checkpoint with the token sequences a probe reads."""

    checkpoint: Path
    model: SCMTForCausalLM
    tokenizer: object | None
    sequences: list[list[int]]
    data_source: str
    checkpoint_fingerprint: str
    data_fingerprint: str

    def decode_token(self, token_id: int) -> str:
        if self.tokenizer is None:
            return str(token_id)
        return self.tokenizer.convert_ids_to_tokens(int(token_id))


def load_probe_input(checkpoint: str | Path | None = None, data: str | Path | None = None, limit: int | None = None) -> ProbeInput:
    """Load an SCMT checkpoint (default: the shipped strict demo) and its probe set or ``data``."""
    directory = Path(checkpoint) if checkpoint is not None else default_checkpoint()
    try:
        model = load_checkpoint(directory)
    except CheckpointError as error:
        raise TargetError(str(error)) from None
    tokenizer = _load_tokenizer(directory)
    if data is not None:
        sequences = read_token_sequences(data, tokenizer, str(directory))
        source = str(data)
    elif (directory / PROBE_SET_FILE).is_file():
        sequences = load_probe_set(directory)["input_ids"]
        source = "probe set"
    else:
        raise TargetError(f"{directory} has no {PROBE_SET_FILE}: pass --data with token ids (JSON) or molecules (CSV)")
    sequences = [row[: model.config.max_len] for row in sequences if len(row) >= 2]
    if limit is not None:
        sequences = sequences[:limit]
    if not sequences:
        raise TargetError(f"no sequence of at least 2 tokens in {source}")
    weights = [path for path in (directory / "model.safetensors", directory / "pytorch_model.bin") if path.is_file()]
    return ProbeInput(
        checkpoint=directory,
        model=model,
        tokenizer=tokenizer,
        sequences=sequences,
        data_source=source,
        checkpoint_fingerprint=sha256_of_files([directory / "config.json", *weights])[:16],
        data_fingerprint=hashlib.sha256(json.dumps(sequences).encode()).hexdigest()[:16],
    )


@torch.no_grad()
def record(model: SCMTForCausalLM, sequences: list[list[int]], names: list[str], batch_size: int = 64) -> list[dict]:
    """Run every sequence and return, per sequence, the logits and the recorded hook-point values.

    Sequences are batched only with others of the same length, so no padding
    enters the model (in legacy mode padding would move earlier positions).
    Tensors whose second axis is positions come back as L×... per sequence;
    anything else (the memory events) as ``(value, row in its batch)``.
    """
    by_length: dict[int, list[int]] = {}
    for index, ids in enumerate(sequences):
        by_length.setdefault(len(ids), []).append(index)
    by_index: dict[int, dict] = {}
    for length, members in sorted(by_length.items()):
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            batch = torch.tensor([sequences[index] for index in chunk], dtype=torch.int64)
            with trace(model, names) as cache:
                logits = model(batch).logits
            for row, index in enumerate(chunk):
                item = {"logits": logits[row]}
                for name in names:
                    if name not in cache:
                        continue
                    value = cache[name]
                    if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == length:
                        item[name] = value[row]
                    else:
                        item[name] = (value, row)
                by_index[index] = item
    return [by_index[index] for index in range(len(sequences))]


# --- stored results ---------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("SCMT_LAB_CACHE", Path.home() / ".cache" / "scmt-lab"))


def results_path(probe: ProbeInput, name: str) -> Path:
    """Return the path of a probe's result: next to the checkpoint when writable, else in the cache."""
    beside = probe.checkpoint / RESULTS_DIR
    if os.access(probe.checkpoint, os.W_OK) and (not beside.exists() or os.access(beside, os.W_OK)):
        return beside / f"{name}.json"
    return cache_root() / probe.checkpoint_fingerprint / f"{name}.json"


def provenance(probe: ProbeInput, name: str, version: int, seed: int, options: dict) -> dict:
    return {
        "format": RESULT_FORMAT,
        "probe": name,
        "probe_version": version,
        "checkpoint": str(probe.checkpoint),
        "checkpoint_fingerprint": probe.checkpoint_fingerprint,
        "data_source": probe.data_source,
        "data_fingerprint": probe.data_fingerprint,
        "seed": seed,
        "options": options,
    }


def load_stored(path: Path, expected: dict) -> dict | None:
    """Return the stored payload when its provenance matches ``expected`` (the checkpoint path aside), else None."""
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    stored = dict(payload.get("provenance", {}))
    stored.pop("checkpoint", None)
    wanted = dict(expected)
    wanted.pop("checkpoint", None)
    return payload if stored == wanted else None


def store(path: Path, provenance_record: dict, tables: dict[str, pd.DataFrame], values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "provenance": provenance_record,
        "tables": {name: json.loads(table.to_json(orient="split", index=False)) for name, table in tables.items()},
        "values": values,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(payload), encoding="utf-8")
    temporary.replace(path)


def tables_from(payload: dict) -> dict[str, pd.DataFrame]:
    return {
        name: pd.DataFrame(table["data"], columns=table["columns"])
        for name, table in payload.get("tables", {}).items()
    }


@dataclass
class ProbeResult:
    """Tables (pandas DataFrames) and scalar values of one probe run, with provenance."""

    name: str
    tables: dict[str, pd.DataFrame]
    values: dict
    provenance: dict
    path: Path
    reused: bool

    def __getitem__(self, table: str) -> pd.DataFrame:
        return self.tables[table]


def cached_run(probe: ProbeInput, name: str, version: int, seed: int, options: dict, compute, refresh: bool = False) -> ProbeResult:
    """Return the stored result when still valid, else ``compute()`` it and store it.

    ``compute`` returns ``(tables, values)``.
    """
    expected = provenance(probe, name, version, seed, options)
    path = results_path(probe, name)
    payload = None if refresh else load_stored(path, expected)
    if payload is not None:
        return ProbeResult(name, tables_from(payload), payload.get("values", {}), expected, path, reused=True)
    torch.manual_seed(seed)
    tables, values = compute()
    try:
        store(path, expected, tables, values)
    except OSError:
        path = cache_root() / probe.checkpoint_fingerprint / f"{name}.json"
        store(path, expected, tables, values)
    return ProbeResult(name, tables, values, expected, path, reused=False)


def add_common_arguments(parser) -> None:
    parser.add_argument("checkpoint", nargs="?", default=None, help="SCMT checkpoint directory (default: the shipped strict demo)")
    parser.add_argument("--data", default=None, help="sequences: JSON token ids or probe set, or a SMILES CSV / text file")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N sequences")
    parser.add_argument("--refresh", action="store_true", help="recompute even when a stored result is still valid")


def run_cli(compute) -> ProbeResult | None:
    """Call a probe for a CLI: print a one-line error and return None when its input is unusable."""
    try:
        result = compute()
    except TargetError as error:
        print(f"error: {error}", file=sys.stderr)
        return None
    origin = "stored result" if result.reused else "computed"
    print(f"{result.provenance['checkpoint']} ({origin}, {result.path})")
    return result
