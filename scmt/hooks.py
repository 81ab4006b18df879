"""Named hook points and a small tracing API on top of them.

Every internal step of :class:`scmt.SCMTForCausalLM` passes its result through
a :class:`HookPoint`, an identity module named after what it carries
(``hook_entropy_norm``, ``hook_read_weights``, ...). Standard
``register_forward_hook`` works on them: a hook that returns a value replaces
the step's result, and everything downstream uses the replacement.

Example::

    from scmt.hooks import trace, patch

    with trace(model, ["hook_entropy_norm", "hook_write"]) as cache:
        model(input_ids)
    cache["hook_entropy_norm"]          # B×L tensor of the last call

    with patch(model, {"hook_write": lambda w, name: torch.zeros_like(w)}):
        out = model(input_ids)          # a run in which nothing is written
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class HookPointError(KeyError):
    """An unknown or unrecorded hook-point name (a ``KeyError`` whose message prints plainly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class HookPoint(nn.Module):
    """Identity module that marks one named step of the forward pass."""

    def forward(self, value: Any) -> Any:
        return value


def hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Return every :class:`HookPoint` of ``model`` by its module name, in forward order."""
    return {name: module for name, module in model.named_modules() if isinstance(module, HookPoint)}


def _resolve(model: nn.Module, names: Iterable[str] | None) -> dict[str, HookPoint]:
    points = hook_points(model)
    if names is None:
        return points
    if isinstance(names, str):
        names = [names]
    selected = {}
    for name in names:
        if name not in points:
            raise HookPointError(
                f"unknown hook point {name!r}: list the valid names with scmt.hook_points(model) "
                f"(they start with hook_ or encoder.hook_layer_out.)"
            )
        selected[name] = points[name]
    return selected


def _detach(value: Any) -> Any:
    """Copy tensors (also inside dataclasses and dicts) so later in-place steps cannot change a record."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if hasattr(value, "detached"):
        return value.detached()
    if isinstance(value, dict):
        return {key: _detach(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(item) for item in value)
    return value


class ActivationCache:
    """Values recorded at hook points, indexed by hook-point name.

    ``cache[name]`` is the value of the latest forward call; ``cache.history(name)``
    lists the value of every call recorded, oldest first.
    """

    def __init__(self) -> None:
        self._records: dict[str, list[Any]] = {}

    def _add(self, name: str, value: Any) -> None:
        self._records.setdefault(name, []).append(value)

    def __getitem__(self, name: str) -> Any:
        if name not in self._records:
            recorded = ", ".join(self._records) or "none"
            raise HookPointError(f"hook point {name!r} recorded nothing: recorded points are {recorded}")
        return self._records[name][-1]

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def keys(self) -> list[str]:
        return list(self._records)

    def history(self, name: str) -> list[Any]:
        """Return the values recorded at ``name`` in every call, oldest first."""
        return list(self._records.get(name, []))


@contextmanager
def trace(
    model: nn.Module, names: Iterable[str] | None = None, detach: bool = True
) -> Iterator[ActivationCache]:
    """Record the values passing through the chosen hook points (all when ``names`` is None).

    With ``detach`` (the default) each record is a detached copy; pass ``detach=False``
    to keep the autograd graph, for example to take gradients of a recorded value.
    """
    cache = ActivationCache()
    handles = []
    for name, point in _resolve(model, names).items():

        def record(module, args, output, name=name):
            cache._add(name, _detach(output) if detach else output)

        handles.append(point.register_forward_hook(record))
    try:
        yield cache
    finally:
        for handle in handles:
            handle.remove()


Patch = Any | Callable[[Any, str], Any]


@contextmanager
def patch(model: nn.Module, patches: dict[str, Patch]) -> Iterator[None]:
    """Replace the values of hook points while the context is open.

    Each value of ``patches`` is either the replacement itself (a tensor of the same
    shape as the original) or a function ``fn(original, name) -> replacement``.
    """
    handles = []
    points = _resolve(model, list(patches))
    for name, point in points.items():
        replacement = patches[name]

        def substitute(module, args, output, name=name, replacement=replacement):
            if callable(replacement):
                return replacement(output, name)
            if isinstance(replacement, torch.Tensor) and isinstance(output, torch.Tensor):
                if replacement.shape != output.shape:
                    raise ValueError(
                        f"patch for {name} has shape {tuple(replacement.shape)} but the hook point "
                        f"carries {tuple(output.shape)}: pass a tensor of that shape or a function"
                    )
                return replacement.to(dtype=output.dtype, device=output.device)
            return replacement

        handles.append(point.register_forward_hook(substitute))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
