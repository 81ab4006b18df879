"""The causal-leakage gate: does a language model peek at future tokens, and why?

    python -m probes.leakage [TARGET] [--json PATH] [--junit PATH] [--seed 0] [--trials 512]
                             [--checks future_perturbation,gradient,...] [--tolerance X] [--device cpu]

TARGET is a checkpoint directory (SCMT in either layout, or any
``AutoModelForCausalLM`` directory), a runs directory (every checkpoint in
it) or ``module:callable``; without one, the shipped demo runs. Exit status: 0
when no check leaked, 1 when at least one did, 2 when the run could not be
done (with a one-line reason).

Checks, each on real sequences (the checkpoint's probe set, ``--data``, or
random tokens when the model brings none):

- ``future_perturbation``: cut a sequence at k and replace tokens >= k (random
  tokens, another sequence's suffix, padding); logits and log-probs before k
  must not move.
- ``gradient``: gradients of past logits and past per-position losses with
  respect to future input embeddings are zero.
- ``batch_independence``: changing one batch row moves no other row, in eval
  and in train mode (dropout masks seeded alike).
- ``incremental``: the model's own incremental path, fed pieces of several
  sizes, gives the full-sequence logits.
- ``padding``: appending padding does not move the real positions.

Comparisons between runs of the same shape use a tolerance measured from the
model's own float noise (0 when, as usual, the same shape gives bit-identical
results); comparisons across shapes (incremental, padding) allow 1000 machine
epsilons times the logit scale. The model runs in float64 when it allows, so
that a real leak cannot hide in rounding.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .stats import wilson_upper
from .targets import ModelUnderTest, TargetError, load_target, read_token_sequences, resolve_targets

CHECKS = ("future_perturbation", "gradient", "batch_independence", "incremental", "padding")
SUFFIX_KINDS = ("random", "donor", "padding")
REPORT_VERSION = 1
#: Sequences tested per model: the longest of the probe set (or data) up to this many.
MAX_SEQUENCES = 16
PROFILE_LENGTH = 32


@dataclass
class CheckResult:
    """Outcome of one check: trials, leaks and where the worst leak was."""

    name: str
    status: str = "skipped"
    trials: int = 0
    leaking: int = 0
    leak_rate: float = 0.0
    leak_rate_upper_95: float = 1.0
    max_delta: float = 0.0
    typical_delta: float = 0.0
    tolerance: float = 0.0
    profile: list[float] = field(default_factory=list)
    worst: dict | None = None
    note: str = ""

    def finish(self, deltas: list[float], tolerance: float) -> None:
        """Fill the statistics from per-trial |Δ| values."""
        self.trials = len(deltas)
        self.tolerance = tolerance
        leaks = [delta for delta in deltas if delta > tolerance]
        self.leaking = len(leaks)
        self.leak_rate = self.leaking / self.trials if self.trials else 0.0
        self.leak_rate_upper_95 = wilson_upper(self.leaking, self.trials)
        self.max_delta = max(deltas, default=0.0)
        self.typical_delta = float(torch.tensor(leaks).median()) if leaks else 0.0
        self.status = "leak" if self.leaking else "pass"


@dataclass
class LeakageReport:
    """Everything one gate run on one model found."""

    target: str
    seed: int
    dtype: str
    sequences: int
    data_source: str
    noise: dict
    checks: dict[str, CheckResult]
    mechanisms: list[dict] = field(default_factory=list)
    version: int = REPORT_VERSION

    @property
    def leaked(self) -> bool:
        return any(check.status == "leak" for check in self.checks.values())

    @property
    def total_trials(self) -> int:
        return sum(check.trials for check in self.checks.values())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["verdict"] = "leak" if self.leaked else "clean"
        return data


# --- inputs -----------------------------------------------------------------------------


def max_length(target: ModelUnderTest) -> int:
    config = getattr(target.model, "config", None)
    for name in ("max_len", "n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 64


def choose_sequences(target: ModelUnderTest, data: list[list[int]] | None, seed: int) -> tuple[list[list[int]], str]:
    """Up to MAX_SEQUENCES token sequences of at least 8 tokens that fit the model."""
    limit = min(max_length(target), 96)
    source = "data"
    if data is None and target.probe_ids:
        data, source = target.probe_ids, "probe set"
    if data is None:
        generator = torch.Generator().manual_seed(seed)
        length = min(32, limit)
        data = torch.randint(0, target.vocab_size, (MAX_SEQUENCES, length), generator=generator).tolist()
        source = "random tokens"
    usable = [list(row[:limit]) for row in data if len(row) >= 8]
    usable.sort(key=len, reverse=True)
    return usable[:MAX_SEQUENCES], source


# --- noise and tolerance ---------------------------------------------------------------


@torch.no_grad()
def measure_noise(target: ModelUnderTest, batch: torch.Tensor) -> dict:
    """Float noise of the model: same shape with rows reversed, and one row fewer."""
    logits = target.logits(batch)
    reversed_rows = target.logits(batch.flip(0)).flip(0)
    same_shape = (logits - reversed_rows).abs().max().item()
    cross_shape = 0.0
    if batch.shape[0] > 1:
        cross_shape = (target.logits(batch[:-1]) - logits[:-1]).abs().max().item()
    scale = max(1.0, logits.abs().max().item())
    return {"same_shape": same_shape, "cross_shape": cross_shape, "logit_scale": scale}


def tolerances(noise: dict, dtype: torch.dtype, override: float | None) -> tuple[float, float]:
    """(same-shape, cross-shape) tolerances on |Δ logit|."""
    if override is not None:
        return override, override
    same = 10 * noise["same_shape"]
    floor = 1000 * torch.finfo(dtype).eps * noise["logit_scale"]
    cross = max(10 * noise["cross_shape"], floor, same)
    return same, cross


# --- checks -----------------------------------------------------------------------------


def log_softmax_delta(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (torch.log_softmax(a, dim=-1) - torch.log_softmax(b, dim=-1)).abs()


def plan_cuts(length: int, per_kind: int, generator: torch.Generator) -> list[int]:
    """Cut positions spread over 1 .. length-1 (all of them when few), in seeded order."""
    cuts = list(range(1, length))
    if len(cuts) <= per_kind:
        return cuts
    chosen = torch.randperm(len(cuts), generator=generator)[:per_kind].sort().values.tolist()
    return [cuts[index] for index in chosen]


@torch.no_grad()
def check_future_perturbation(
    target: ModelUnderTest, sequences: list[list[int]], trials: int, tolerance: float, seed: int, progress: bool
) -> tuple[CheckResult, list[dict]]:
    """Replace every suffix kind at many cuts; past logits and log-probs must not move."""
    result = CheckResult("future_perturbation")
    generator = torch.Generator().manual_seed(seed)
    per_kind = max(1, trials // (len(sequences) * len(SUFFIX_KINDS)))
    deltas: list[float] = []
    profile = [0.0] * PROFILE_LENGTH
    leaking_trials: list[dict] = []
    worst: dict | None = None

    for index in tqdm(range(len(sequences)), desc="future perturbation", unit="seq", disable=not progress):
        ids = torch.tensor(sequences[index])
        length = ids.shape[0]
        donor = torch.tensor((sequences[(index + 1) % len(sequences)] * (length + 1))[:length])
        rows, meta = [], []
        for kind in SUFFIX_KINDS:
            for cut in plan_cuts(length, per_kind, generator):
                row = ids.clone()
                if kind == "random":
                    row[cut:] = torch.randint(0, target.vocab_size, (length - cut,), generator=generator)
                elif kind == "donor":
                    row[cut:] = donor[cut:]
                else:
                    row[cut:] = target.pad_token_id
                rows.append(row)
                meta.append((kind, cut))
        perturbed = torch.stack(rows)
        # The clean run has the same shape as the perturbed one, so both take the same kernels.
        clean = target.logits(ids.expand(len(rows), length).contiguous())
        moved = target.logits(perturbed)
        for row, (kind, cut) in enumerate(meta):
            logit_delta = (moved[row, :cut] - clean[row, :cut]).abs()
            logprob_delta = log_softmax_delta(moved[row, :cut], clean[row, :cut])
            per_position = torch.maximum(logit_delta.amax(dim=-1), logprob_delta.amax(dim=-1))
            delta = float(per_position.max())
            deltas.append(delta)
            for distance in range(min(cut, PROFILE_LENGTH)):
                profile[distance] = max(profile[distance], float(per_position[cut - 1 - distance]))
            if delta > tolerance:
                leaking_trials.append({"sequence": index, "cut": cut, "kind": kind, "row": perturbed[row].tolist(), "delta": delta})
            if worst is None or delta > worst["delta"]:
                position = int(per_position.argmax())
                worst = {
                    "sequence": index,
                    "cut": cut,
                    "kind": kind,
                    "delta": delta,
                    "position": position,
                    "prefix": target.decode(ids[:cut].tolist()),
                    "clean_suffix": target.decode(ids[cut:].tolist()),
                    "replaced_suffix": target.decode(perturbed[row, cut:].tolist()),
                }
    result.finish(deltas, tolerance)
    result.profile = profile
    result.worst = worst if result.leaking else None
    result.note = f"{len(SUFFIX_KINDS)} suffix kinds ({', '.join(SUFFIX_KINDS)}), up to {per_kind} cuts each per sequence"
    return result, leaking_trials


def _embedding_inputs(target: ModelUnderTest, batch: torch.Tensor):
    """Run the model so that its input embeddings are a leaf with gradient; return (logits, embeddings)."""
    embedding = target.embedding_module()
    if embedding is None:
        return None, None
    captured = {}

    def make_leaf(module, inputs, output):
        leaf = output.detach().requires_grad_(True)
        captured["embeds"] = leaf
        return leaf

    handle = embedding.register_forward_hook(make_leaf)
    try:
        logits = target.logits(batch)
    finally:
        handle.remove()
    return logits, captured.get("embeds")


def check_gradient(target: ModelUnderTest, sequences: list[list[int]], tolerance: float, seed: int) -> CheckResult:
    """Gradients of past logits and past losses with respect to future embeddings are zero."""
    result = CheckResult("gradient")
    generator = torch.Generator().manual_seed(seed)
    deltas: list[float] = []
    worst = None
    for index, ids in enumerate(sequences[:4]):
        ids = torch.tensor(ids)
        length = ids.shape[0]
        cuts = plan_cuts(length, 12, generator)
        batch = ids.expand(len(cuts), length).contiguous()
        logits, embeds = _embedding_inputs(target, batch)
        if embeds is None:
            result.note = "the model exposes no input embedding module (get_input_embeddings)"
            return result
        cut_tensor = torch.tensor(cuts).unsqueeze(1)
        positions = torch.arange(length).unsqueeze(0)
        past = (positions < cut_tensor).unsqueeze(-1)
        losses = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), batch[:, 1:], reduction="none"
        )
        objectives = {
            "logits": (logits * past).sum(),
            "loss": (losses * (positions[:, :-1] < cut_tensor)).sum(),
        }
        for name, objective in objectives.items():
            (grad,) = torch.autograd.grad(objective, embeds, retain_graph=True)
            for row, cut in enumerate(cuts):
                delta = float(grad[row, cut:].abs().max())
                deltas.append(delta)
                if worst is None or delta > worst["delta"]:
                    worst = {"sequence": index, "cut": cut, "objective": name, "delta": delta,
                             "future_position": cut + int(grad[row, cut:].abs().amax(dim=-1).argmax())}
    result.finish(deltas, tolerance)
    result.worst = worst if result.leaking else None
    result.note = "d(past logits) and d(past per-position losses) / d(future input embeddings)"
    return result


@torch.no_grad()
def check_batch_independence(target: ModelUnderTest, sequences: list[list[int]], tolerance: float, seed: int) -> CheckResult:
    """Changing one row moves no other row, in eval and in train mode."""
    result = CheckResult("batch_independence")
    rows = sequences[:8]
    if len(rows) < 2:
        result.note = "needs at least two sequences"
        return result
    length = min(len(row) for row in rows)
    batch = torch.tensor([row[:length] for row in rows])
    generator = torch.Generator().manual_seed(seed)
    deltas: list[float] = []
    worst = None
    model = target.model
    saved_state = copy.deepcopy(model.state_dict())
    try:
        for mode in ("eval", "train"):
            model.train(mode == "train")
            torch.manual_seed(seed)
            clean = target.logits(batch)
            for changed in range(batch.shape[0]):
                perturbed = batch.clone()
                perturbed[changed] = torch.randint(0, target.vocab_size, (length,), generator=generator)
                torch.manual_seed(seed)
                moved = target.logits(perturbed)
                others = [row for row in range(batch.shape[0]) if row != changed]
                for row in others:
                    delta = float((moved[row] - clean[row]).abs().max())
                    deltas.append(delta)
                    if worst is None or delta > worst["delta"]:
                        worst = {"mode": mode, "changed_row": changed, "moved_row": row, "delta": delta}
    finally:
        model.load_state_dict(saved_state)
        model.eval()
    result.finish(deltas, tolerance)
    result.worst = worst if result.leaking else None
    result.note = f"{batch.shape[0]} rows, eval and train mode"
    return result


@torch.no_grad()
def check_incremental(target: ModelUnderTest, sequences: list[list[int]], tolerance: float, seed: int) -> CheckResult:
    """Check that the model's incremental path, fed pieces of several sizes, gives the full-sequence logits."""
    result = CheckResult("incremental")
    if not target.supports_pieces():
        result.note = "the model has no incremental path (forward_in_pieces or a key/value cache)"
        return result
    rows = sequences[:8]
    length = min(len(row) for row in rows)
    batch = torch.tensor([row[:length] for row in rows])
    full = target.logits(batch)
    generator = torch.Generator().manual_seed(seed)
    random_split = []
    remaining = length
    while remaining:
        size = min(remaining, int(torch.randint(1, 9, (1,), generator=generator)))
        random_split.append(size)
        remaining -= size
    schemes = {"1": [1] * length, "3": _pieces(length, 3), "8": _pieces(length, 8), "random": random_split}
    deltas: list[float] = []
    worst = None
    for name, sizes in schemes.items():
        logits = target.logits_in_pieces(batch, sizes)
        per_row = (logits - full).abs().amax(dim=(1, 2))
        for row, delta in enumerate(per_row.tolist()):
            deltas.append(delta)
            if worst is None or delta > worst["delta"]:
                position = int((logits[row] - full[row]).abs().amax(dim=-1).argmax())
                worst = {"pieces": name, "row": row, "delta": delta, "position": position}
    result.finish(deltas, tolerance)
    result.worst = worst if result.leaking else None
    result.note = f"piece sizes 1, 3, 8 and a seeded random split, {batch.shape[0]} rows of {length} tokens"
    return result


def _pieces(length: int, size: int) -> list[int]:
    return [size] * (length // size) + ([length % size] if length % size else [])


@torch.no_grad()
def check_padding(target: ModelUnderTest, sequences: list[list[int]], tolerance: float) -> CheckResult:
    """Appending padding does not move the real positions."""
    result = CheckResult("padding")
    limit = max_length(target)
    rows = sequences[:8]
    length = min(min(len(row) for row in rows), limit - 1)
    batch = torch.tensor([row[:length] for row in rows])
    base = target.logits(batch)
    deltas: list[float] = []
    worst = None
    for extra in (1, 5, 17):
        if length + extra > limit:
            continue
        padded = torch.cat([batch, torch.full((batch.shape[0], extra), target.pad_token_id)], dim=1)
        logits = target.logits(padded)[:, :length]
        per_row = (logits - base).abs().amax(dim=(1, 2))
        for row, delta in enumerate(per_row.tolist()):
            deltas.append(delta)
            if worst is None or delta > worst["delta"]:
                worst = {"pads": extra, "row": row, "delta": delta}
    result.finish(deltas, tolerance)
    result.worst = worst if result.leaking else None
    result.note = f"1, 5 and 17 pad tokens (id {target.pad_token_id}) appended to {batch.shape[0]} rows"
    return result


# --- the run ----------------------------------------------------------------------------


def prepare_model(target: ModelUnderTest, device: str, float64: bool) -> torch.dtype:
    """Move the model to ``device`` and, when it allows, to float64; return the dtype used."""
    target.model.to(device)
    if float64:
        try:
            target.model.double()
            with torch.no_grad():
                target.logits(torch.zeros(1, 4, dtype=torch.int64, device=device))
            return torch.float64
        except (RuntimeError, TypeError):
            target.model.float()
    return torch.float32


def run_gate(
    target: ModelUnderTest,
    seed: int = 0,
    trials: int = 512,
    checks: tuple[str, ...] = CHECKS,
    tolerance: float | None = None,
    device: str = "cpu",
    float64: bool = True,
    data: list[list[int]] | None = None,
    progress: bool = False,
) -> LeakageReport:
    """Run the chosen checks on one model and return the report (the Python API of the gate)."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}: choose from {', '.join(CHECKS)}")
    torch.manual_seed(seed)
    dtype = prepare_model(target, device, float64)
    sequences, source = choose_sequences(target, data, seed)
    if not sequences:
        raise TargetError(f"{target.name}: no sequence of at least 8 tokens to test with: pass --data")
    sequences = [[min(max(token, 0), target.vocab_size - 1) for token in row] for row in sequences]

    original_logits = target.logits

    def on_device(input_ids: torch.Tensor) -> torch.Tensor:
        return original_logits(input_ids.to(device)).to("cpu", torch.float64)

    target.logits = on_device
    try:
        length = min(len(row) for row in sequences[:8])
        noise = measure_noise(target, torch.tensor([row[:length] for row in sequences[:8]]))
        same_tolerance, cross_tolerance = tolerances(noise, dtype, tolerance)
        noise.update({"same_shape_tolerance": same_tolerance, "cross_shape_tolerance": cross_tolerance})

        results: dict[str, CheckResult] = {}
        leaking_trials: list[dict] = []
        if "future_perturbation" in checks:
            results["future_perturbation"], leaking_trials = check_future_perturbation(
                target, sequences, trials, same_tolerance, seed, progress
            )
        if "gradient" in checks:
            results["gradient"] = check_gradient(target, sequences, same_tolerance, seed)
        if "batch_independence" in checks:
            results["batch_independence"] = check_batch_independence(target, sequences, same_tolerance, seed)
        if "incremental" in checks:
            results["incremental"] = check_incremental(target, sequences, cross_tolerance, seed)
        if "padding" in checks:
            results["padding"] = check_padding(target, sequences, cross_tolerance)
    finally:
        target.logits = original_logits

    report = LeakageReport(
        target=target.name,
        seed=seed,
        dtype=str(dtype).replace("torch.", ""),
        sequences=len(sequences),
        data_source=source,
        noise=noise,
        checks=results,
    )
    if target.has_hook_points and leaking_trials:
        from .mechanisms import attribute_leaks

        report.mechanisms = attribute_leaks(target.model, leaking_trials, sequences, same_tolerance, device)
    return report


# --- output -----------------------------------------------------------------------------


def format_report(report: LeakageReport) -> str:
    lines = [
        f"{report.target}: {'LEAK' if report.leaked else 'clean'} ({report.dtype}, seed {report.seed}, "
        f"{report.sequences} sequences from the {report.data_source})",
        f"{'check':<20} {'status':<8} {'trials':>6} {'leaking':>7} {'rate':>7} {'95% upper':>9} {'max |Δ|':>10} {'typical':>10}",
    ]
    for check in report.checks.values():
        lines.append(
            f"{check.name:<20} {check.status:<8} {check.trials:>6} {check.leaking:>7} {check.leak_rate:>7.1%} "
            f"{check.leak_rate_upper_95:>9.2%} {check.max_delta:>10.3g} {check.typical_delta:>10.3g}"
        )
        if check.status == "skipped":
            lines.append(f"{'':<20} {check.note}")
    noise = report.noise
    lines.append(
        f"tolerance: {noise['same_shape_tolerance']:.3g} for same-shape runs (measured noise {noise['same_shape']:.3g}), "
        f"{noise['cross_shape_tolerance']:.3g} across shapes (measured noise {noise['cross_shape']:.3g})"
    )
    if report.mechanisms:
        from .mechanisms import EXPLANATIONS

        analysed = report.mechanisms[0]["analysed"]
        lines.append(f"mechanisms ({analysed} leaking perturbation trials analysed; the smallest set of fixes that removes each):")
        for mechanism in report.mechanisms:
            fixes = " + ".join(mechanism["fixed_by"]) or "none found"
            lines.append(f"  {mechanism['share']:>5.0%}  {fixes}")
        used = sorted({fix for mechanism in report.mechanisms for fix in mechanism["fixed_by"]})
        for fix in used:
            lines.append(f"  {fix}: fixes {EXPLANATIONS[fix]}")
    perturbation = report.checks.get("future_perturbation")
    if perturbation is not None and perturbation.worst:
        worst = perturbation.worst
        lines.append(
            f"worst: cut {worst['cut']} ({worst['kind']} suffix), |Δ| {worst['delta']:.3g} at position {worst['position']}\n"
            f"  prefix:   {worst['prefix']}\n  clean:    {worst['clean_suffix']}\n  replaced: {worst['replaced_suffix']}"
        )
    return "\n".join(lines)


def write_junit(reports: list[LeakageReport], path: Path) -> None:
    """Write JUnit XML with one test case per check and model, for CI systems."""
    suite = ElementTree.Element("testsuite", name="probes.leakage")
    count = failures = skipped = 0
    for report in reports:
        for check in report.checks.values():
            count += 1
            case = ElementTree.SubElement(suite, "testcase", classname=report.target, name=check.name)
            if check.status == "leak":
                failures += 1
                failure = ElementTree.SubElement(
                    case, "failure", message=f"{check.leaking}/{check.trials} trials leaked, max |delta| {check.max_delta:.3g}"
                )
                failure.text = json.dumps(check.worst, default=str)
            elif check.status == "skipped":
                skipped += 1
                ElementTree.SubElement(case, "skipped", message=check.note)
    suite.set("tests", str(count))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    ElementTree.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m probes.leakage", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default=None, help="checkpoint dir, runs dir or module:callable (default: the shipped demo runs)")
    parser.add_argument("--json", default=None, help="write the full report as JSON to this path")
    parser.add_argument("--junit", default=None, help="write JUnit XML (one test case per check) to this path")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument(
        "--trials",
        type=int,
        default=512,
        help="future-perturbation trials per model (default 512), rounded down to whole cuts per sequence and "
        "suffix kind, and capped by the cuts each sequence offers",
    )
    parser.add_argument("--checks", default=",".join(CHECKS), help=f"comma-separated checks (default: all of {','.join(CHECKS)})")
    parser.add_argument("--tolerance", type=float, default=None, help="fixed |Δ logit| tolerance instead of the measured one")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--float32", action="store_true", help="stay in float32 instead of moving the model to float64")
    parser.add_argument("--data", default=None, help="sequences to test: JSON token ids or probe set, or a SMILES CSV / text file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def output_path_problem(value: str | None) -> str | None:
    """Why a report could not be written to ``value`` (None when it can), checked before the run."""
    if value is None:
        return None
    path = Path(value)
    if path.is_dir():
        return "is a directory: pass a file path"
    if not path.parent.is_dir():
        return f"directory {path.parent} not found: create it first"
    if not os.access(path.parent, os.W_OK):
        return f"directory {path.parent} is not writable"
    return None


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:
        return 2 if exit_request.code else 0
    checks = tuple(name.strip() for name in args.checks.split(",") if name.strip())
    unknown = sorted(set(checks) - set(CHECKS))
    if not checks:
        return fail(f"--checks {args.checks!r} names no check: choose from {','.join(CHECKS)}")
    if unknown:
        return fail(f"--checks {args.checks!r}: unknown {unknown}; choose from {','.join(CHECKS)}")
    if args.trials < 1:
        return fail(f"--trials {args.trials}: pass at least 1")
    if args.tolerance is not None and args.tolerance < 0:
        return fail(f"--tolerance {args.tolerance}: pass a non-negative number")
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        return fail(f"--device {args.device}: invalid or unavailable here; use cpu, or cuda on a machine with a GPU")
    for option, value in (("--json", args.json), ("--junit", args.junit)):
        problem = output_path_problem(value)
        if problem:
            return fail(f"{option} {value}: {problem}")

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.time()
    reports: list[LeakageReport] = []
    try:
        for spec in resolve_targets(args.target):
            target = load_target(spec)
            data = read_token_sequences(args.data, target.tokenizer, target.name) if args.data else None
            report = run_gate(
                target,
                seed=args.seed,
                trials=args.trials,
                checks=checks,
                tolerance=args.tolerance,
                device=args.device,
                float64=not args.float32,
                data=data,
                progress=not args.no_progress,
            )
            reports.append(report)
            print(format_report(report), flush=True)
            print()
    except TargetError as error:
        return fail(str(error))

    if sum(report.total_trials for report in reports) == 0:
        return fail("no trials were run: every check was skipped")
    if args.json:
        payload = reports[0].to_dict() if len(reports) == 1 else {"version": REPORT_VERSION, "reports": [r.to_dict() for r in reports]}
        Path(args.json).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    if args.junit:
        write_junit(reports, Path(args.junit))
    leaked = [report.target for report in reports if report.leaked]
    print(f"{len(reports)} model(s), {len(leaked)} leaking, {time.time() - started:.1f} s")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
