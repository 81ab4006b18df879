"""Entropy curves: raw and normalised entropy and the write threshold at every position.

    python -m probes.entropy [CKPT] [--data PATH] [--seed 0]

Per sequence and position: the entropy of the backbone's next-token
distribution (nats), its normalised value, the write threshold, their margin,
whether the memory was written, and the next-token loss. Aggregated over the
corpus: mean and spread by position, and how well entropy predicts the loss
(Pearson and Spearman correlation).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from .common import ProbeResult, add_common_arguments, cached_run, load_probe_input, record, run_cli

PROBE_VERSION = 1
HOOKS = ["hook_entropy", "hook_entropy_norm", "hook_threshold", "hook_write"]


def per_position_table(probe, recorded: list[dict]) -> pd.DataFrame:
    rows = []
    for index, (ids, item) in enumerate(zip(probe.sequences, recorded)):
        tokens = torch.tensor(ids)
        losses = torch.nn.functional.cross_entropy(item["logits"][:-1].float(), tokens[1:], reduction="none")
        for position in range(len(ids)):
            rows.append(
                {
                    "sequence": index,
                    "position": position,
                    "token": probe.decode_token(ids[position]),
                    "entropy": float(item["hook_entropy"][position]),
                    "entropy_norm": float(item["hook_entropy_norm"][position]),
                    "threshold": float(item["hook_threshold"][position]),
                    "wrote": bool(item["hook_write"][position]),
                    "next_token_loss": float(losses[position]) if position < len(ids) - 1 else float("nan"),
                }
            )
    table = pd.DataFrame(rows)
    table["margin"] = table["entropy_norm"] - table["threshold"]
    return table


def entropy_probe(checkpoint=None, data=None, seed: int = 0, limit: int | None = None, refresh: bool = False) -> ProbeResult:
    """Run (or reuse) the entropy probe; tables ``per_position`` and ``by_position``."""
    probe = load_probe_input(checkpoint, data, limit)

    def compute():
        recorded = record(probe.model, probe.sequences, HOOKS)
        table = per_position_table(probe, recorded)
        by_position = (
            table.groupby("position")
            .agg(
                count=("entropy", "size"),
                entropy_mean=("entropy", "mean"),
                entropy_std=("entropy", "std"),
                entropy_norm_mean=("entropy_norm", "mean"),
                entropy_norm_std=("entropy_norm", "std"),
                threshold_mean=("threshold", "mean"),
                threshold_std=("threshold", "std"),
                write_rate=("wrote", "mean"),
            )
            .reset_index()
        )
        scored = table.dropna(subset=["next_token_loss"])
        values = {
            "sequences": len(probe.sequences),
            "positions": len(table),
            "mean_entropy": float(table["entropy"].mean()),
            "write_rate": float(table["wrote"].mean()),
            "pearson_entropy_loss": float(scored["entropy"].corr(scored["next_token_loss"])),
            "spearman_entropy_loss": float(scored["entropy"].corr(scored["next_token_loss"], method="spearman")),
        }
        return {"per_position": table, "by_position": by_position}, values

    return cached_run(probe, "entropy", PROBE_VERSION, seed, {"data": probe.data_source}, compute, refresh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probes.entropy", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    result = run_cli(lambda: entropy_probe(args.checkpoint, args.data, args.seed, args.limit, args.refresh))
    if result is None:
        return 2
    values = result.values
    print(
        f"{values['sequences']} sequences, {values['positions']} positions: mean entropy {values['mean_entropy']:.3f} nats, "
        f"write rate {values['write_rate']:.1%}"
    )
    print(
        f"entropy predicts next-token loss: Pearson {values['pearson_entropy_loss']:.3f}, "
        f"Spearman {values['spearman_entropy_loss']:.3f}"
    )
    print(result["by_position"].head(12).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
