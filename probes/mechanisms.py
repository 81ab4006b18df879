"""Leak attribution for models with hook points (SCMT).

For each analysed leaking trial the clean and the perturbed sequence run side
by side, three ways:

1. the first hook point whose values at past positions differ is where the
   future first reaches the past;
2. clean values patched into the perturbed run at past positions: does
   patching the normalised entropy, or the instance context (the memory read),
   restore the past logits?
3. counterfactual fixes: the smallest set of SCMT's causal switches that, turned
   on, removes the trial's leak names the mechanism that carries it.
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from itertools import combinations

import torch

from scmt import hook_points, patch, trace

#: The fixes tried, in the order that names a mechanism when several work alone.
FIXES = ("prefix_entropy_norm", "zero_empty_read", "read_as_of_step")

EXPLANATIONS = {
    "prefix_entropy_norm": (
        "entropy normalisation over the whole sequence: the suffix shifts the row's entropy mean and std, "
        "which changes normalised entropy, the threshold's running statistics and so write decisions at "
        "earlier positions"
    ),
    "zero_empty_read": (
        "a position with no visible memory entry reads all slots uniformly, so entries written after it "
        "leak into its read"
    ),
    "read_as_of_step": (
        "every position reads the memory as it stands after the last step: later writes evict entries that "
        "earlier positions would have seen and change the slots they read"
    ),
    "unexplained": "no combination of the causal fixes removes it",
}

MAX_ANALYSED = 24


def _past_differs(clean: torch.Tensor, moved: torch.Tensor, cut: int, length: int) -> bool:
    if clean.dim() < 2 or clean.shape[1] != length or clean.shape != moved.shape:
        return False
    if clean.dtype == torch.bool:
        return bool((clean[:, :cut] != moved[:, :cut]).any())
    return bool((clean[:, :cut] - moved[:, :cut]).abs().max() > 0)


@contextmanager
def _switches(model, names: tuple[str, ...]):
    """Turn the named causal fixes on for the duration of the block."""
    saved = {name: getattr(model.config, name) for name in FIXES}
    try:
        for name in FIXES:
            setattr(model.config, name, name in names or saved[name])
        yield
    finally:
        for name, value in saved.items():
            setattr(model.config, name, value)


def _past_delta(model, clean_ids: torch.Tensor, moved_ids: torch.Tensor, cut: int) -> float:
    batch = torch.stack([clean_ids, moved_ids])
    logits = model(batch).logits[:, :cut]
    return float((logits[0] - logits[1]).abs().max())


@torch.no_grad()
def _analyse(model, clean_ids: torch.Tensor, moved_ids: torch.Tensor, cut: int, tolerance: float) -> dict:
    """Mechanism, first diverging hook point and patch evidence for one leaking trial."""
    length = clean_ids.shape[0]
    names = [name for name in hook_points(model) if name != "hook_memory_events"]
    with trace(model, names) as clean:
        model(clean_ids.unsqueeze(0))
    with trace(model, names) as moved:
        model(moved_ids.unsqueeze(0))
    first = next(
        (name for name in names if name in clean and _past_differs(clean[name], moved[name], cut, length)),
        "none",
    )
    clean_logits = clean["hook_logits"][:, :cut]

    def keep_past(name):
        reference = clean[name]

        def replace(value, hook_name):
            value = value.clone()
            value[:, :cut] = reference[:, :cut].to(value.dtype)
            return value

        return replace

    def restores(point: str) -> bool:
        with patch(model, {point: keep_past(point)}):
            logits = model(moved_ids.unsqueeze(0)).logits[:, :cut]
        return float((logits - clean_logits).abs().max()) <= tolerance

    evidence = {
        "entropy_norm_patch_restores": restores("hook_entropy_norm"),
        "instance_context_patch_restores": restores("hook_instance_context"),
    }

    mechanism = "unexplained"
    for size in range(1, len(FIXES) + 1):
        working = [combo for combo in combinations(FIXES, size) if _fixed(model, combo, clean_ids, moved_ids, cut, tolerance)]
        if working:
            mechanism = "+".join(working[0])
            break
    return {"mechanism": mechanism, "first_divergence": first, **evidence}


def _fixed(model, combo: tuple[str, ...], clean_ids, moved_ids, cut: int, tolerance: float) -> bool:
    with _switches(model, combo):
        return _past_delta(model, clean_ids, moved_ids, cut) <= tolerance


def explain(mechanism: str) -> str:
    """Plain-words explanation of a mechanism name (fixes joined by '+')."""
    if mechanism in EXPLANATIONS:
        return EXPLANATIONS[mechanism]
    parts = mechanism.split("+")
    return "together, and neither alone suffices: " + "; ".join(EXPLANATIONS[part] for part in parts)


def attribute_leaks(model, leaking_trials: list[dict], sequences: list[list[int]], tolerance: float, device: str) -> list[dict]:
    """Group a deterministic sample of leaking trials by the mechanism that carries each."""
    step = max(1, len(leaking_trials) // MAX_ANALYSED)
    sample = leaking_trials[::step][:MAX_ANALYSED]
    counts: Counter = Counter()
    details: dict[str, dict[str, Counter]] = {}
    for trial in sample:
        clean_ids = torch.tensor(sequences[trial["sequence"]], device=device)
        moved_ids = torch.tensor(trial["row"], device=device)
        found = _analyse(model, clean_ids, moved_ids, trial["cut"], tolerance)
        name = found["mechanism"]
        counts[name] += 1
        bucket = details.setdefault(name, {"first_divergence": Counter(), "evidence": Counter()})
        bucket["first_divergence"][found["first_divergence"]] += 1
        for key in ("entropy_norm_patch_restores", "instance_context_patch_restores"):
            bucket["evidence"][key] += int(found[key])
    analysed = len(sample)
    return [
        {
            "mechanism": name,
            "fixed_by": [] if name == "unexplained" else name.split("+"),
            "explanation": explain(name),
            "trials": count,
            "analysed": analysed,
            "share": count / analysed,
            "first_divergence": dict(details[name]["first_divergence"].most_common()),
            "patch_evidence": dict(details[name]["evidence"]),
        }
        for name, count in counts.most_common()
    ]
