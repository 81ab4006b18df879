"""Reproduce the published evaluation: SCMT against a GPT-2 of the same size, over seeds.

    python benchmarks/reference_eval.py --out runs/reference-eval [--seeds 2025 2026 2027]
        [--models scmt-legacy scmt-strict gpt2] [--epochs 1] [--limit N] [train options...]

Trains one run per model and seed with ``python -m scmt.train`` (the
published defaults: 1 epoch, sequence 90, batch 8, lr 2e-4; the default
tokenizer is the published n-gram vocabulary, as in the published figures),
then prints a Markdown table of the final held-out LM loss and perplexity
with the mean and standard deviation over seeds. Options after the known ones
are passed to ``scmt.train`` unchanged, for example ``--d-model 64`` to run
at a smaller scale. Runs that already exist are reused, not retrained.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = {
    "scmt-legacy": ["--model", "scmt", "--mode", "legacy"],
    "scmt-strict": ["--model", "scmt", "--mode", "strict"],
    "gpt2": ["--model", "gpt2"],
}


def final_eval(run: Path) -> dict | None:
    summary = run / "train_summary.json"
    if not summary.is_file():
        return None
    return json.loads(summary.read_text(encoding="utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory for the runs and the results table")
    parser.add_argument("--seeds", type=int, nargs="+", default=[2025, 2026, 2027], help="seeds (default 2025 2026 2027)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS), help="models to train")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs per run (default 1)")
    parser.add_argument("--tokenizer", default="ngram", help="tokenizer of every run (default ngram, as published)")
    args, extra = parser.parse_known_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict]] = {name: [] for name in args.models}
    for seed in args.seeds:
        for name in args.models:
            run = out / f"{name}-seed{seed}"
            summary = final_eval(run)
            if summary is None:
                command = [
                    sys.executable, "-m", "scmt.train", "--output-dir", str(run), "--seed", str(seed),
                    "--epochs", str(args.epochs), "--tokenizer", args.tokenizer, "--save-only-model", "--no-progress",
                    *MODELS[name], *extra,
                ]
                print(" ".join(command), flush=True)
                started = time.time()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                print(f"  {time.time() - started:.0f} s", flush=True)
                summary = final_eval(run)
            results[name].append({"seed": seed, **summary})

    lines = ["| model | " + " | ".join(f"seed {seed}" for seed in args.seeds) + " | mean ± sd loss | mean perplexity |",
             "|---|" + "---|" * len(args.seeds) + "---|---|"]
    for name, runs in results.items():
        losses = [run["eval_loss"] for run in runs]
        spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
        perplexity = statistics.mean(run["eval_perplexity"] for run in runs)
        cells = " | ".join(f"{loss:.3f}" for loss in losses)
        lines.append(f"| {name} | {cells} | {statistics.mean(losses):.3f} ± {spread:.3f} | {perplexity:.2f} |")
    table = "\n".join(lines)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
