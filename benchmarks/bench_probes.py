"""Time every probe on a shipped demo checkpoint, computed from scratch, in one process.

    python benchmarks/bench_probes.py [CKPT] [--threads 2]

Copies the checkpoint to a scratch directory (so stored results never exist
yet), then times the entropy, memory and schema probes on its 256-sequence
probe set, and once more to show the cost of reusing stored results.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from probes.common import default_checkpoint
from probes.entropy import entropy_probe
from probes.memory import memory_probe
from probes.schemas import schema_probe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", default=None, help="checkpoint (default: the shipped strict demo)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    source = Path(args.checkpoint) if args.checkpoint else default_checkpoint()

    print(f"checkpoint {source}")
    print("| probe | computed s | reused s |")
    print("|---|---|---|")
    total = 0.0
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "checkpoint"
        shutil.copytree(source, checkpoint, ignore=shutil.ignore_patterns("probe_results"))
        for name, probe in (("entropy", entropy_probe), ("memory", memory_probe), ("schemas", schema_probe)):
            started = time.perf_counter()
            probe(checkpoint)
            computed = time.perf_counter() - started
            started = time.perf_counter()
            result = probe(checkpoint)
            reused = time.perf_counter() - started
            assert result.reused
            total += computed
            print(f"| {name} | {computed:.1f} | {reused:.1f} |", flush=True)
    print(f"| all three | {total:.1f} | |")


if __name__ == "__main__":
    main()
