"""A literal per-row, per-token transcription of the published memory update.

It follows the published code's structure (Python lists, one step at a time, a
host sync per decision). It is slow on purpose: the tests compare the
vectorised update in ``scmt.memory`` with it, and the benchmarks time both.
"""

from __future__ import annotations

import torch

EMPTY = 1_000_000_000


@torch.no_grad()
def loop_memory_update(model, enc, h0, entropy_norm, threshold, memory=None, step_mode=False, offset=0):
    """Return (keys B×M×D, values B×M×D, ages B×M, timestamps B×M) after one published call."""
    config = model.config
    batch, length, d_model = enc.shape
    out_keys = torch.zeros(batch, config.mem_size, d_model)
    out_values = torch.zeros(batch, config.mem_size, d_model)
    out_ages = torch.zeros(batch, config.mem_size)
    out_ts = torch.full((batch, config.mem_size), EMPTY, dtype=torch.int64)
    steps = [length - 1] if step_mode else range(length)
    for b in range(batch):
        keys, values, ages, stamps = [], [], [], []
        if memory is not None:
            for slot in range(config.mem_size):
                keys.append(memory.keys[b, slot])
                values.append(memory.values[b, slot])
                ages.append(float(memory.ages[b, slot]))
                stamps.append(int(memory.ages[b, slot]))
        for t in steps:
            if float(entropy_norm[b, t]) > float(threshold[b, t]):
                keys.append(model.key_proj(enc[b, t]))
                values.append(model.value_proj(h0[b, t]))
                ages.append(0.0)
                stamps.append(t + offset)
            if keys:
                ages = [age + 1 for age in ages]
            if len(keys) > config.mem_size:
                stacked = torch.stack(keys)
                importance = model.importance_net(stacked).squeeze(-1)
                obsolescence = model.obsolescence_net(stacked).squeeze(-1)
                stale = torch.tensor([max(0, t + offset - s) for s in stamps], dtype=importance.dtype)
                keep = torch.topk(importance - stale * obsolescence, config.mem_size).indices.tolist()
                keys = [keys[i] for i in keep]
                values = [values[i] for i in keep]
                ages = [ages[i] for i in keep]
                stamps = [stamps[i] for i in keep]
        for slot in range(len(keys)):
            out_keys[b, slot] = keys[slot]
            out_values[b, slot] = values[slot]
            out_ages[b, slot] = ages[slot]
            out_ts[b, slot] = stamps[slot]
    return out_keys, out_values, out_ages, out_ts
