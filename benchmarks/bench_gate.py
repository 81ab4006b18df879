"""Time the leakage gate on a published-default-config SCMT (3.8 M parameters), sequences of 90.

    python benchmarks/bench_gate.py [--threads 2]

Writes a legacy and a strict checkpoint (random init) with a probe set of 16
rows of 90 real molecule tokens (packed end to end), then times ``run_gate``
with every check: the default run (512 perturbation trials), then more trials,
then shorter and longer sequences. Loading is timed apart from the checks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from probes.leakage import run_gate
from probes.targets import load_target
from scmt import SCMTConfig, SCMTForCausalLM
from scmt.data import save_probe_set
from scmt.tokenization import NgramTokenizer

from bench_model import molecule_batch


def write_checkpoint(directory: Path, mode: str, rows: torch.Tensor) -> Path:
    torch.manual_seed(0)
    model = SCMTForCausalLM(SCMTConfig(vocab_size=793, mode=mode))
    model.save_pretrained(directory)
    save_probe_set({"version": 1, "seed": 0, "texts": [], "input_ids": rows.tolist()}, directory)
    return directory


def timed_run(checkpoint: Path, trials: int, length: int) -> tuple[float, float, str]:
    started = time.perf_counter()
    target = load_target(str(checkpoint))
    loaded = time.perf_counter()
    data = [row[:length] for row in target.probe_ids]
    report = run_gate(target, trials=trials, data=data)
    finished = time.perf_counter()
    return loaded - started, finished - loaded, "leak" if report.leaked else "clean"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    rows = molecule_batch(16, 90, NgramTokenizer.from_file())

    print("| mode | trials | sequence length | load s | checks s | verdict |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for mode in ("legacy", "strict"):
            checkpoint = write_checkpoint(Path(scratch) / mode, mode, rows)
            cases = [(512, 90), (128, 90), (2048, 90), (512, 30), (512, 60)]
            for trials, length in cases:
                load_seconds, check_seconds, verdict = timed_run(checkpoint, trials, length)
                print(f"| {mode} | {trials} | {length} | {load_seconds:.1f} | {check_seconds:.1f} | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
