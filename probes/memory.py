"""Memory traces: what was written where, what it evicted, and what each position could read.

    python -m probes.memory [CKPT] [--data PATH] [--seed 0]

Per sequence and position: normalised entropy, threshold and their margin,
whether the position wrote and into which slot, the entry its write evicted
(written at which position, with what score), how many entries the read could
see, its three strongest read weights (entries are slots of the final memory
in legacy mode, indices of the call's entry pool in strict mode), and how many
entries the memory held after the step. Per run: occupancy against position, write rate by symbol, entry
lifetimes until eviction, and how often a read found nothing visible.
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from .common import ProbeResult, add_common_arguments, cached_run, load_probe_input, record, run_cli

PROBE_VERSION = 2
HOOKS = ["hook_entropy_norm", "hook_threshold", "hook_write", "hook_memory_events", "hook_read_mask", "hook_read_weights"]


def _events_of_row(events, row: int) -> tuple[dict[int, int], dict[int, dict], list[dict]]:
    """Write slots by position, evictions by step, and evicted entries' lifetimes for one batch row."""
    write_slot = {}
    for batch, position, slot in zip(events.write_batch.tolist(), events.write_position.tolist(), events.write_slot.tolist()):
        if batch == row:
            write_slot[position] = slot
    evictions, lifetimes = {}, []
    for batch, step, written, score in zip(
        events.evict_batch.tolist(), events.evict_step.tolist(), events.evict_written_at.tolist(), events.evict_score.tolist()
    ):
        if batch == row:
            evictions[step] = {"written_at": written, "score": score}
            lifetimes.append({"written_at": written, "evicted_at": step, "lifetime": step - written})
    return write_slot, evictions, lifetimes


def trace_tables(probe, recorded: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, lifetime_rows = [], []
    for index, (ids, item) in enumerate(zip(probe.sequences, recorded)):
        events, row = item["hook_memory_events"]
        write_slot, evictions, lifetimes = _events_of_row(events, row)
        for entry in lifetimes:
            lifetime_rows.append({"sequence": index, **entry})
        visible = item["hook_read_mask"].sum(dim=-1)
        weights = item["hook_read_weights"]
        top = weights.topk(min(3, weights.shape[-1]), dim=-1)
        held = 0
        for position in range(len(ids)):
            wrote = bool(item["hook_write"][position])
            held += int(wrote) - int(position in evictions)
            eviction = evictions.get(position)
            rows.append(
                {
                    "sequence": index,
                    "position": position,
                    "token": probe.decode_token(ids[position]),
                    "entropy_norm": float(item["hook_entropy_norm"][position]),
                    "threshold": float(item["hook_threshold"][position]),
                    "wrote": wrote,
                    "slot": write_slot.get(position, -1),
                    "evicted_written_at": eviction["written_at"] if eviction else -1,
                    "evicted_score": eviction["score"] if eviction else float("nan"),
                    "visible_entries": int(visible[position]),
                    "top_read_weight": float(top.values[position, 0]),
                    "top_read_entry": int(top.indices[position, 0]),
                    "top_reads": "; ".join(
                        f"{int(entry)}:{float(weight):.3f}"
                        for entry, weight in zip(top.indices[position], top.values[position])
                        if weight > 0
                    ),
                    "entries_held": held,
                }
            )
    table = pd.DataFrame(rows)
    table["margin"] = table["entropy_norm"] - table["threshold"]
    return table, pd.DataFrame(lifetime_rows, columns=["sequence", "written_at", "evicted_at", "lifetime"])


def memory_probe(checkpoint=None, data=None, seed: int = 0, limit: int | None = None, refresh: bool = False) -> ProbeResult:
    """Run (or reuse) the memory probe; tables ``per_position``, ``occupancy``, ``write_rate_by_symbol``, ``lifetimes``."""
    probe = load_probe_input(checkpoint, data, limit)
    mem_size = probe.model.config.mem_size

    def compute():
        recorded = record(probe.model, probe.sequences, HOOKS)
        table, lifetimes = trace_tables(probe, recorded)
        occupancy = (
            table.assign(occupancy=table["entries_held"] / mem_size)
            .groupby("position")
            .agg(count=("occupancy", "size"), occupancy_mean=("occupancy", "mean"), occupancy_std=("occupancy", "std"))
            .reset_index()
        )
        by_symbol = (
            table.groupby("token")
            .agg(count=("wrote", "size"), write_rate=("wrote", "mean"), mean_margin=("margin", "mean"))
            .reset_index()
            .sort_values(["write_rate", "count"], ascending=False)
        )
        values = {
            "mem_size": mem_size,
            "mode": probe.model.config.causal_mode,
            "write_rate": float(table["wrote"].mean()),
            "empty_read_rate": float((table["visible_entries"] == 0).mean()),
            "evictions": int(len(lifetimes)),
            "median_lifetime": float(lifetimes["lifetime"].median()) if len(lifetimes) else float("nan"),
            "final_occupancy": float(occupancy["occupancy_mean"].iloc[-1]),
        }
        tables = {"per_position": table, "occupancy": occupancy, "write_rate_by_symbol": by_symbol, "lifetimes": lifetimes}
        return tables, values

    return cached_run(probe, "memory", PROBE_VERSION, seed, {"data": probe.data_source}, compute, refresh)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probes.memory", description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    result = run_cli(lambda: memory_probe(args.checkpoint, args.data, args.seed, args.limit, args.refresh))
    if result is None:
        return 2
    values = result.values
    print(
        f"{values['mode']} mode, {values['mem_size']} slots: write rate {values['write_rate']:.1%}, "
        f"reads with nothing visible {values['empty_read_rate']:.1%}, {values['evictions']} evictions "
        f"(median lifetime {values['median_lifetime']:.1f} positions)"
    )
    print("write rate by symbol (most written first):")
    print(result["write_rate_by_symbol"].head(10).to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print("occupancy by position:")
    print(result["occupancy"].iloc[:: max(1, len(result["occupancy"]) // 10)].to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
