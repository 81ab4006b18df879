"""The vectorised memory update agrees with a literal per-token loop of the published code."""

from __future__ import annotations

import pytest
import torch

from scmt import SCMTMemory, trace

from .conftest import make_model
from scmt.reference_loop import loop_memory_update

CASES = [
    # (mem_size, length, carried, step_mode, seed)
    (4, 24, False, False, 0),
    (4, 24, True, False, 1),
    (8, 40, False, False, 2),
    (8, 40, True, False, 3),
    (16, 30, True, True, 4),
    (64, 30, False, False, 5),
]


@pytest.mark.parametrize("mem_size,length,carried,step_mode,seed", CASES)
def test_vectorised_matches_loop(mem_size, length, carried, step_mode, seed):
    model = make_model("legacy", seed=seed, vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=mem_size, num_schemas=4)
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 60, (3, length), generator=generator)

    memory = None
    if carried:
        with torch.no_grad():
            memory = model(torch.randint(0, 60, (3, length), generator=generator)).memory

    names = ["hook_embed", "hook_encoder_out", "hook_entropy_norm", "hook_threshold", "hook_memory_events"]
    with torch.no_grad(), trace(model, names) as cache:
        out = model(input_ids, memory=memory, step_mode=step_mode, position_offset=length if carried else 0)
    keys, values, ages, stamps = loop_memory_update(
        model,
        cache["hook_encoder_out"],
        cache["hook_embed"],
        cache["hook_entropy_norm"],
        cache["hook_threshold"],
        memory=memory,
        step_mode=step_mode,
        offset=length if carried else 0,
    )

    assert torch.equal(out.memory.timestamps, stamps)
    assert torch.equal(out.memory.ages, ages)
    assert torch.allclose(out.memory.keys, keys, atol=1e-5)
    assert torch.allclose(out.memory.values, values, atol=1e-5)


def test_loop_cases_exercise_pruning():
    model = make_model("legacy", seed=0, vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=4, num_schemas=4)
    with torch.no_grad(), trace(model, ["hook_memory_events"]) as cache:
        model(torch.randint(0, 60, (3, 24), generator=torch.Generator().manual_seed(0)))
    assert cache["hook_memory_events"].num_evictions > 0


def test_events_account_for_memory():
    model = make_model("strict", seed=3, vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=6, num_schemas=4)
    input_ids = torch.randint(0, 60, (4, 32), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), trace(model, ["hook_memory_events"]) as cache:
        out = model(input_ids)
    events = cache["hook_memory_events"]

    assert events.num_writes == int(out.write_mask.sum())
    for row in range(4):
        writes = int((events.write_batch == row).sum())
        evictions = int((events.evict_batch == row).sum())
        assert int(out.memory.occupied[row].sum()) == writes - evictions
    # A write that survived is found in its reported final slot with its timestamp.
    kept = events.write_final_slot >= 0
    slots = events.write_final_slot[kept]
    rows = events.write_batch[kept]
    assert torch.equal(out.memory.timestamps[rows, slots], events.write_position[kept])
    # Every evicted entry was written no later than the step that evicted it.
    assert (events.evict_written_at <= events.evict_step).all()


def test_legacy_memory_round_trip_through_from_legacy():
    model = make_model("strict", seed=1, vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4)
    input_ids = torch.randint(0, 60, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        memory = model(input_ids).memory
    rebuilt = SCMTMemory.from_legacy(memory.keys, memory.values, memory.ages, position_offset=20)
    assert torch.equal(rebuilt.occupied, memory.occupied)
    assert torch.equal(rebuilt.timestamps, memory.timestamps)
