"""The episodic key-value memory of SCMT: writes, pruning and reads, vectorised.

The published code keeps one Python list per batch row and walks the tokens one
by one. The semantics it implements, per row, are:

1. at step t, write the entry of position t when its normalised entropy exceeds
   the write threshold (timestamp ``t + offset``, age 0);
2. age every entry by one;
3. when the memory contains more than ``mem_size`` entries, keep the ``mem_size``
   with the highest score ``importance(key) - max(0, t + offset - timestamp) *
   obsolescence(key)``, re-ordered by descending score.

A write never depends on the memory, and each prune removes exactly one entry
(the lowest score), so everything except the prunes is computed at once for all
rows and steps: every entry that ever exists sits in a *pool* (carried-in
entries first, then one candidate per position), and the prunes only fill in
each entry's eviction step. The loop runs over the steps at which some row
prunes, with no host sync inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from torch import nn

#: Timestamp of an empty slot, as the published code writes it.
EMPTY_TIMESTAMP = 1_000_000_000

#: Eviction step of an entry that is never evicted.
NEVER = torch.iinfo(torch.int64).max

#: Score given to invisible slots in the published read (not -inf, so an
#: all-invisible row softmaxes to a uniform distribution).
LEGACY_MASK_SCORE = -1e4


MEMORY_FIELDS = ("keys", "values", "ages", "timestamps", "occupied")


class SCMTMemory:
    """Episodic memory state of a batch, M slots a row, kept entries first.

    Attributes:
        keys: B×M×D keys.
        values: B×M×D values.
        ages: B×M float, steps since each entry was written (0 for empty slots).
        timestamps: B×M int64, global position of each write
            (``EMPTY_TIMESTAMP`` for empty slots).
        occupied: B×M bool, which slots hold an entry.

    A memory returned by the model may be *deferred*: its tensors are built on first
    access, so a forward pass whose caller never looks at the memory does not pay
    for laying it out.
    """

    __slots__ = ("_tensors", "_build")

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        ages: torch.Tensor,
        timestamps: torch.Tensor,
        occupied: torch.Tensor,
    ) -> None:
        self._tensors = {"keys": keys, "values": values, "ages": ages, "timestamps": timestamps, "occupied": occupied}
        self._build = None

    @classmethod
    def deferred(cls, build) -> "SCMTMemory":
        """Create a memory whose tensors come from ``build()`` (a dict of the five fields) when first read."""
        memory = cls.__new__(cls)
        memory._tensors = None
        memory._build = build
        return memory

    def _fields(self) -> dict[str, torch.Tensor]:
        if self._tensors is None:
            with torch.no_grad():
                self._tensors = self._build()
            self._build = None
        return self._tensors

    keys = property(lambda self: self._fields()["keys"])
    values = property(lambda self: self._fields()["values"])
    ages = property(lambda self: self._fields()["ages"])
    timestamps = property(lambda self: self._fields()["timestamps"])
    occupied = property(lambda self: self._fields()["occupied"])

    def __repr__(self) -> str:
        if self._tensors is None:
            return "SCMTMemory(deferred)"
        return f"SCMTMemory(batch={self.batch_size}, slots={self.size}, occupied={int(self.occupied.sum())})"

    @property
    def batch_size(self) -> int:
        return self.keys.shape[0]

    @property
    def size(self) -> int:
        return self.keys.shape[1]

    def detached(self) -> "SCMTMemory":
        return SCMTMemory(**{name: getattr(self, name).detach().clone() for name in MEMORY_FIELDS})

    def to(self, *args, **kwargs) -> "SCMTMemory":
        """Move to a device or cast floating tensors, like ``Tensor.to``."""
        moved = {}
        for name in MEMORY_FIELDS:
            tensor = getattr(self, name)
            if tensor.is_floating_point():
                moved[name] = tensor.to(*args, **kwargs)
            else:
                device = next((a for a in args if isinstance(a, (str, torch.device))), kwargs.get("device"))
                moved[name] = tensor.to(device) if device is not None else tensor
        return SCMTMemory(**moved)

    def select(self, rows: torch.Tensor | slice | list[int]) -> "SCMTMemory":
        """Return the memory of a subset of batch rows."""
        return SCMTMemory(**{name: getattr(self, name)[rows] for name in MEMORY_FIELDS})

    @classmethod
    def empty(cls, batch_size: int, mem_size: int, d_model: int, dtype=torch.float32, device=None) -> "SCMTMemory":
        return cls(
            keys=torch.zeros(batch_size, mem_size, d_model, dtype=dtype, device=device),
            values=torch.zeros(batch_size, mem_size, d_model, dtype=dtype, device=device),
            ages=torch.zeros(batch_size, mem_size, dtype=dtype, device=device),
            timestamps=torch.full((batch_size, mem_size), EMPTY_TIMESTAMP, dtype=torch.int64, device=device),
            occupied=torch.zeros(batch_size, mem_size, dtype=torch.bool, device=device),
        )

    @classmethod
    def from_legacy(
        cls,
        keys: torch.Tensor,
        values: torch.Tensor,
        ages: torch.Tensor,
        timestamps: torch.Tensor | None = None,
        position_offset: int = 0,
    ) -> "SCMTMemory":
        """Build a memory from the published (keys, values, ages) triple.

        An empty slot has age 0 (a real entry has age >= 1 after its write step).
        Without timestamps, each entry's write time is recovered as
        ``position_offset - age``, which is exact when the pieces were fed one after
        the other with ``position_offset`` counting the tokens seen so far.
        """
        occupied = ages > 0
        if timestamps is None:
            timestamps = (position_offset - ages.round()).to(torch.int64)
        timestamps = torch.where(occupied, timestamps.to(torch.int64), torch.full_like(timestamps, EMPTY_TIMESTAMP, dtype=torch.int64))
        return cls(keys=keys, values=values, ages=ages, timestamps=timestamps, occupied=occupied)

    def validate(self, batch_size: int, mem_size: int, d_model: int) -> None:
        """Raise ValueError naming the first tensor whose shape does not fit the model and batch."""
        expected = {
            "keys": (batch_size, mem_size, d_model),
            "values": (batch_size, mem_size, d_model),
            "ages": (batch_size, mem_size),
            "timestamps": (batch_size, mem_size),
            "occupied": (batch_size, mem_size),
        }
        for name, shape in expected.items():
            tensor = getattr(self, name)
            if not isinstance(tensor, torch.Tensor):
                raise ValueError(f"memory.{name} is a {type(tensor).__name__}, expected a tensor of shape {shape}")
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"memory.{name} has shape {tuple(tensor.shape)} but this model and batch need {shape} "
                    f"(batch, mem_size[, d_model]): pass the memory returned for the same batch by this model"
                )


@dataclass
class MemoryPool:
    """Every entry that exists at some step of one forward call, P = M_in + L a row.

    The pool keeps a candidate for every position, written or not, so that its
    shape depends only on the input length: reads then run the same kernels
    whatever the future holds, and a changed suffix cannot move earlier logits
    even by float rounding.

    Attributes:
        keys, values: B×P×D, carried-in entries first, then one candidate per position.
        timestamps: B×P int64 write times (as the published code sets them for carried entries).
        insert_step: B×P int64, the step at which the entry joined (-1 for carried ones).
        exists: B×P bool, carried-in slots taken and positions that wrote.
        evict_step: B×P int64, the step whose prune removed the entry, ``NEVER`` if kept.
        carried: number of carried-in slots at the front of the pool (0 or M).
    """

    keys: torch.Tensor
    values: torch.Tensor
    timestamps: torch.Tensor
    insert_step: torch.Tensor
    exists: torch.Tensor
    evict_step: torch.Tensor
    carried: int
    pruned: bool = False

    def present_after(self, steps: torch.Tensor) -> torch.Tensor:
        """B×len(steps)×P bool: entries in the memory as it stood after each step."""
        steps = steps.view(1, -1, 1)
        present = self.exists.unsqueeze(1) & (self.insert_step.unsqueeze(1) <= steps)
        if self.pruned:
            present = present & (self.evict_step.unsqueeze(1) > steps)
        return present

    def present_at_end(self) -> torch.Tensor:
        return self.exists & (self.evict_step == NEVER)


@dataclass
class MemoryEvents:
    """Writes and evictions of one forward call, one row of each tensor per event.

    Writes: ``write_batch``, ``write_position`` (step t), ``write_entry`` (pool index),
    ``write_slot`` (slot index at the moment of the write; ``mem_size`` means it
    overflowed and a prune followed), ``write_final_slot`` (slot in the returned
    memory, -1 if evicted within the call).

    Evictions: ``evict_batch``, ``evict_step``, ``evict_entry`` (pool index),
    ``evict_written_at`` (the entry's timestamp), ``evict_score`` (its prune score,
    the lowest of the memory at that step).
    """

    write_batch: torch.Tensor
    write_position: torch.Tensor
    write_entry: torch.Tensor
    write_slot: torch.Tensor
    write_final_slot: torch.Tensor
    evict_batch: torch.Tensor
    evict_step: torch.Tensor
    evict_entry: torch.Tensor
    evict_written_at: torch.Tensor
    evict_score: torch.Tensor

    def detached(self) -> "MemoryEvents":
        return replace(self, **{f.name: getattr(self, f.name).detach().clone() for f in fields(self)})

    @property
    def num_writes(self) -> int:
        return int(self.write_batch.numel())

    @property
    def num_evictions(self) -> int:
        return int(self.evict_batch.numel())


def build_pool(
    memory: SCMTMemory | None,
    new_keys: torch.Tensor,
    new_values: torch.Tensor,
    write: torch.Tensor,
    position_offset: int,
    carry_write_times: bool,
) -> MemoryPool:
    """Lay out carried-in entries and this call's write candidates side by side.

    ``new_keys``/``new_values`` are B×L×D candidates, ``write`` the B×L decisions.
    With ``carry_write_times`` off (published behaviour) every carried slot is an
    entry, empty ones included, and its timestamp is its age cast to an integer.
    """
    batch, length, _ = new_keys.shape
    device = new_keys.device
    steps = torch.arange(length, device=device)
    new_timestamps = (steps + position_offset).expand(batch, length)

    if memory is None:
        return MemoryPool(
            keys=new_keys,
            values=new_values,
            timestamps=new_timestamps,
            insert_step=steps.expand(batch, length),
            exists=write,
            evict_step=torch.full((batch, length), NEVER, dtype=torch.int64, device=device),
            carried=0,
        )

    if carry_write_times:
        carried_exists = memory.occupied
        carried_timestamps = memory.timestamps
    else:
        carried_exists = torch.ones_like(memory.occupied)
        carried_timestamps = memory.ages.to(torch.int64)

    carried = memory.keys.shape[1]
    return MemoryPool(
        keys=torch.cat([memory.keys.to(new_keys.dtype), new_keys], dim=1),
        values=torch.cat([memory.values.to(new_values.dtype), new_values], dim=1),
        timestamps=torch.cat([carried_timestamps, new_timestamps], dim=1),
        insert_step=torch.cat([torch.full((batch, carried), -1, dtype=torch.int64, device=device), steps.expand(batch, length)], dim=1),
        exists=torch.cat([carried_exists, write], dim=1),
        evict_step=torch.full((batch, carried + length), NEVER, dtype=torch.int64, device=device),
        carried=carried,
    )


def prune_scores(
    importance: torch.Tensor, obsolescence: torch.Tensor, timestamps: torch.Tensor, step: torch.Tensor | int, position_offset: int
) -> torch.Tensor:
    """B×P retention scores at ``step``: importance minus staleness times obsolescence."""
    if isinstance(step, torch.Tensor):
        step = step.unsqueeze(-1)
    staleness = (step + position_offset - timestamps).clamp(min=0).to(importance.dtype)
    return importance - staleness * obsolescence


@dataclass
class PruneResult:
    """Eviction events and the per-row step of the last prune (-2 for rows that never pruned)."""

    last_prune_step: torch.Tensor
    evict_batch: torch.Tensor
    evict_step: torch.Tensor
    evict_entry: torch.Tensor
    evict_score: torch.Tensor
    importance: torch.Tensor | None
    obsolescence: torch.Tensor | None


def run_prunes(
    pool: MemoryPool,
    write: torch.Tensor,
    mem_size: int,
    position_offset: int,
    importance_net: nn.Module,
    obsolescence_net: nn.Module,
) -> PruneResult:
    """Fill in ``pool.evict_step`` by replaying every prune, and return the evictions.

    A row prunes at step t when it writes at t and then contains more than
    ``mem_size`` entries. Each prune evicts the present entry with the lowest score.
    """
    batch = write.shape[0]
    device = write.device
    carried_count = pool.exists[:, : pool.carried].sum(dim=1, keepdim=True)
    count_after_write = carried_count + write.long().cumsum(dim=1)
    prune = write & (count_after_write > mem_size)
    prune_steps = prune.any(dim=0).nonzero().flatten().tolist()

    last_prune_step = torch.full((batch,), -2, dtype=torch.int64, device=device)
    empty_long = torch.zeros(0, dtype=torch.int64, device=device)
    if not prune_steps:
        return PruneResult(last_prune_step, empty_long, empty_long, empty_long, pool.keys.new_zeros(0), None, None)

    with torch.no_grad():
        importance = importance_net(pool.keys).squeeze(-1)
        obsolescence = obsolescence_net(pool.keys).squeeze(-1)

    rows_index = torch.arange(batch, device=device)
    batches, steps, entries, scores = [], [], [], []
    for step in prune_steps:
        rows = prune[:, step]
        score = prune_scores(importance, obsolescence, pool.timestamps, step, position_offset)
        candidate = pool.exists & (pool.insert_step <= step) & (pool.evict_step == NEVER)
        victim = score.masked_fill(~candidate, math.inf).argmin(dim=1)
        victim_score = score.gather(1, victim.unsqueeze(1)).squeeze(1)

        row_ids = rows_index[rows]
        pool.evict_step[row_ids, victim[rows]] = step
        pool.pruned = True
        last_prune_step[rows] = step
        batches.append(row_ids)
        steps.append(torch.full_like(row_ids, step))
        entries.append(victim[rows])
        scores.append(victim_score[rows])

    return PruneResult(
        last_prune_step=last_prune_step,
        evict_batch=torch.cat(batches),
        evict_step=torch.cat(steps),
        evict_entry=torch.cat(entries),
        evict_score=torch.cat(scores),
        importance=importance,
        obsolescence=obsolescence,
    )


def final_slots(pool: MemoryPool, prunes: PruneResult, position_offset: int) -> torch.Tensor:
    """B×P slot of each pool entry in the returned memory, -1 for entries not in it.

    Entries present at a row's last prune come first, by descending score at that
    prune (the order ``torch.topk`` leaves them in); entries written afterwards
    follow in write order; without any prune, carried slots then writes in order.
    """
    present = pool.present_at_end()
    if prunes.importance is None:
        return torch.where(present, present.long().cumsum(dim=1) - 1, -1)

    last = prunes.last_prune_step.unsqueeze(1)
    sorted_by_score = present & (pool.insert_step <= last)
    group = torch.where(sorted_by_score, 0, torch.where(present, 1, 2))
    score_at_last = prune_scores(prunes.importance, prunes.obsolescence, pool.timestamps, prunes.last_prune_step, position_offset)
    within = torch.where(sorted_by_score, -score_at_last, pool.insert_step.to(score_at_last.dtype))

    # Sort by the secondary key, then stably by group: a lexicographic sort.
    order = torch.argsort(within, dim=1, stable=True)
    order = order.gather(1, torch.argsort(group.gather(1, order), dim=1, stable=True))
    slots = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return torch.where(present, slots, -1)


def gather_final_memory(
    pool: MemoryPool,
    slots: torch.Tensor,
    mem_size: int,
    carried_ages: torch.Tensor | None,
    steps_taken: int,
    last_step: int,
) -> dict[str, torch.Tensor]:
    """Lay out the memory after the call (the fields of :class:`SCMTMemory`), each kept entry in its slot."""
    batch = slots.shape[0]
    rows, entries = (slots >= 0).nonzero(as_tuple=True)
    targets = slots[rows, entries]

    keys = pool.keys.new_zeros(batch, mem_size, pool.keys.shape[-1])
    keys[rows, targets] = pool.keys[rows, entries]
    values = pool.values.new_zeros(batch, mem_size, pool.values.shape[-1])
    values[rows, targets] = pool.values[rows, entries]
    timestamps = torch.full((batch, mem_size), EMPTY_TIMESTAMP, dtype=torch.int64, device=slots.device)
    timestamps[rows, targets] = pool.timestamps[rows, entries]
    occupied = torch.zeros(batch, mem_size, dtype=torch.bool, device=slots.device)
    occupied[rows, targets] = True

    # Ages: new entries grew by one per step since their write, carried ones by one per step taken.
    kept_ages = (last_step - pool.insert_step[rows, entries] + 1).to(pool.keys.dtype)
    if carried_ages is not None:
        carried = entries < pool.carried
        from_carried = carried_ages.to(kept_ages.dtype)[rows, entries.clamp(max=pool.carried - 1)] + steps_taken
        kept_ages = torch.where(carried, from_carried, kept_ages)
    ages = pool.keys.new_zeros(batch, mem_size)
    ages[rows, targets] = kept_ages
    return {"keys": keys, "values": values, "ages": ages, "timestamps": timestamps, "occupied": occupied}


def write_events(
    pool: MemoryPool, write: torch.Tensor, prunes: PruneResult, final_slot: torch.Tensor, mem_size: int
) -> MemoryEvents:
    """Collect the writes and evictions of a call into a :class:`MemoryEvents`."""
    carried_count = pool.exists[:, : pool.carried].sum(dim=1, keepdim=True)
    slot_at_write = (carried_count + write.long().cumsum(dim=1) - 1).clamp(max=mem_size)
    write_batch, write_position = write.nonzero(as_tuple=True)
    write_entry = write_position + pool.carried
    return MemoryEvents(
        write_batch=write_batch,
        write_position=write_position,
        write_entry=write_entry,
        write_slot=slot_at_write[write_batch, write_position],
        write_final_slot=final_slot[write_batch, write_entry],
        evict_batch=prunes.evict_batch,
        evict_step=prunes.evict_step,
        evict_entry=prunes.evict_entry,
        evict_written_at=pool.timestamps[prunes.evict_batch, prunes.evict_entry],
        evict_score=prunes.evict_score,
    )


def read_final_memory(
    queries: torch.Tensor, memory: SCMTMemory, position_offset: int, zero_empty_read: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Published read: every position reads the memory as it is after the last step.

    Returns the B×L×M visibility mask (slot written at or before the position) and
    the B×L×M read weights. Invisible slots score -1e4, so a position that sees
    no slot reads all M slots uniformly unless ``zero_empty_read``.
    """
    length = queries.shape[1]
    positions = torch.arange(length, device=queries.device) + position_offset
    visible = memory.timestamps.unsqueeze(1) <= positions.view(1, -1, 1)

    scores = queries @ memory.keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
    scores = scores.masked_fill(~visible, LEGACY_MASK_SCORE)
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1), nan=0.0)
    if zero_empty_read:
        weights = weights * visible.any(dim=-1, keepdim=True)
    return visible, weights


def read_as_of_step(
    queries: torch.Tensor,
    pool: MemoryPool,
    mem_size: int,
    position_offset: int,
    zero_empty_read: bool,
    true_timestamps: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal read: position t sees the memory as it stood after step t.

    Returns the B×L×P visibility mask over the pool and the B×L×P read weights.
    Entries written later, or evicted at or before step t, are invisible; entries
    evicted after t are still visible. A position that sees nothing reads zero
    with ``zero_empty_read``, else the uniform average over the M slots of the
    memory at that step (as the published read does). ``true_timestamps`` states
    that every timestamp is a real write time, so an entry present at step t was
    written at or before it and the timestamp check can be skipped.
    """
    length = queries.shape[1]
    steps = torch.arange(length, device=queries.device)
    present = pool.present_after(steps)
    visible = present
    if not true_timestamps:
        visible = present & (pool.timestamps.unsqueeze(1) <= (steps + position_offset).view(1, -1, 1))
    any_visible = visible.any(dim=-1, keepdim=True)

    scores = queries @ pool.keys.transpose(1, 2) / math.sqrt(queries.shape[-1])
    scores = scores.masked_fill(~visible, -math.inf).masked_fill(~any_visible, 0.0)
    weights = torch.softmax(scores, dim=-1)
    if zero_empty_read:
        weights = weights * any_visible
    else:
        uniform = present.to(weights.dtype) / mem_size
        weights = torch.where(any_visible, weights, uniform)
    return visible, weights
