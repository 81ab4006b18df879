"""What the gate can test, and one calling convention for all of it.

A target is a checkpoint directory (SCMT in either layout, or any
``AutoModelForCausalLM`` directory), a runs directory (every checkpoint below
it), or ``module:callable`` naming a factory that returns an ``nn.Module``
whose forward takes B×L token ids and returns logits (or an object with
``.logits``).
"""

from __future__ import annotations

import importlib
import json
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scmt import SCMTForCausalLM
from scmt.checkpoint import CheckpointError, checkpoint_format, load_checkpoint, read_config_json
from scmt.data import PROBE_SET_FILE, load_probe_set

#: Directory of the shipped demo runs, the default target.
DEMO_RUNS = Path(__file__).resolve().parents[1] / "checkpoints"


class TargetError(ValueError):
    """A target that cannot be loaded; the message names it and the fix."""


@dataclass
class ModelUnderTest:
    """A loaded model with what the checks need to drive it."""

    name: str
    model: nn.Module
    vocab_size: int
    pad_token_id: int
    tokenizer: object | None = None
    probe_ids: list[list[int]] | None = None

    @property
    def has_hook_points(self) -> bool:
        return isinstance(self.model, SCMTForCausalLM)

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """B×L×V logits, whatever the model returns."""
        output = self.model(input_ids)
        if isinstance(output, torch.Tensor):
            return output
        if hasattr(output, "logits"):
            return output.logits
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            return output[0]
        raise TargetError(f"{self.name}: forward returned {type(output).__name__}, expected logits or an object with .logits")

    def embedding_module(self) -> nn.Module | None:
        getter = getattr(self.model, "get_input_embeddings", None)
        module = getter() if callable(getter) else None
        return module if isinstance(module, nn.Module) else None

    def supports_pieces(self) -> bool:
        return callable(getattr(self.model, "forward_in_pieces", None)) or self._is_hf_cache_model()

    def _is_hf_cache_model(self) -> bool:
        # transformers' generation-capable causal LMs take past_key_values and use_cache.
        return not isinstance(self.model, SCMTForCausalLM) and hasattr(self.model, "prepare_inputs_for_generation")

    def logits_in_pieces(self, input_ids: torch.Tensor, piece_sizes: list[int]) -> torch.Tensor:
        """Run the model's own incremental path: its ``forward_in_pieces``, or a HF key/value cache."""
        if callable(getattr(self.model, "forward_in_pieces", None)):
            return self.model.forward_in_pieces(input_ids, piece_sizes)
        # transformers 5 names the cache argument and output "cache"; earlier releases "past_key_values".
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        past, start, outputs = None, 0, []
        for size in piece_sizes:
            output = self.model(input_ids=input_ids[:, start : start + size], use_cache=True, **{name: past})
            past = getattr(output, name)
            outputs.append(output.logits)
            start += size
        return torch.cat(outputs, dim=1)

    def decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return " ".join(str(i) for i in ids)
        return " ".join(self.tokenizer.convert_ids_to_tokens(ids))


def _load_tokenizer(directory: Path):
    from transformers import AutoTokenizer

    has_files = any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    if not has_files:
        return None
    try:
        return AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError):
        return None


def load_checkpoint_target(directory: Path) -> ModelUnderTest:
    """Load one checkpoint directory (SCMT in either layout, or any causal LM)."""
    if not (directory / "config.json").is_file():
        raise TargetError(f"{directory} has no config.json: pass a checkpoint directory, a runs directory or module:callable")
    try:
        config = read_config_json(directory)
        if config.get("model_type", "scmt") == "scmt":
            checkpoint_format(directory)
            model = load_checkpoint(directory)
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(directory).eval()
    except CheckpointError as error:
        raise TargetError(str(error)) from None
    except (OSError, ValueError, RuntimeError) as error:
        raise TargetError(f"{directory}: the model could not be loaded ({error})") from None

    model_config = model.config
    pad = getattr(model_config, "pad_token_id", None)
    tokenizer = _load_tokenizer(directory)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    probe_ids = None
    if (directory / PROBE_SET_FILE).is_file():
        probe_ids = load_probe_set(directory)["input_ids"]
    return ModelUnderTest(
        name=str(directory),
        model=model,
        vocab_size=model_config.vocab_size,
        pad_token_id=pad if pad is not None else 0,
        tokenizer=tokenizer,
        probe_ids=probe_ids,
    )


def load_factory_target(spec: str) -> ModelUnderTest:
    """Build a model from ``module:callable``; its vocabulary size comes from its output width."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise TargetError(f"cannot import module {module_name!r} of {spec!r} ({error}): check the name and PYTHONPATH") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise TargetError(f"{spec!r}: {module_name} has no callable {attribute!r}")
    model = factory()
    if not isinstance(model, nn.Module):
        raise TargetError(f"{spec!r} returned {type(model).__name__}, expected an nn.Module")
    model.eval()
    probe = ModelUnderTest(name=spec, model=model, vocab_size=1, pad_token_id=0)
    embedding = probe.embedding_module()
    if isinstance(embedding, nn.Embedding):
        probe.vocab_size = embedding.num_embeddings
    else:
        with torch.no_grad():
            probe.vocab_size = probe.logits(torch.zeros(1, 2, dtype=torch.int64)).shape[-1]
    return probe


def is_checkpoint_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def resolve_targets(target: str | None) -> list[str]:
    """Expand a target argument into checkpoint paths or one factory spec.

    None means the shipped demo runs. A directory without config.json is a runs
    directory: every checkpoint directory up to two levels below it counts.
    """
    if target is None:
        target = str(DEMO_RUNS)
    path = Path(target)
    if ":" in target and not path.exists():
        return [target]
    if not path.exists():
        raise TargetError(f"{target} not found: pass a checkpoint directory, a runs directory or module:callable")
    if not path.is_dir():
        raise TargetError(f"{target} is a file: pass the checkpoint directory that contains config.json")
    if is_checkpoint_dir(path):
        return [str(path)]
    found = sorted({str(child.parent) for child in path.glob("*/config.json")} | {str(child.parent) for child in path.glob("*/*/config.json")})
    if not found:
        raise TargetError(f"{target} contains no checkpoint (no config.json up to two levels down)")
    return sorted(found, key=_checkpoint_sort_key)


def _checkpoint_sort_key(path: str) -> tuple:
    parent, _, name = path.rpartition("/")
    step = name.split("-")[-1]
    return (parent, int(step) if step.isdigit() else -1, name)


def load_target(spec: str) -> ModelUnderTest:
    if ":" in spec and not Path(spec).exists():
        return load_factory_target(spec)
    return load_checkpoint_target(Path(spec))


def read_token_sequences(path: str | Path, tokenizer, owner: str) -> list[list[int]]:
    """Read token sequences from JSON (id lists or a probe set), or tokenise a SMILES CSV or text file.

    ``owner`` names the checkpoint whose ``tokenizer`` is used, for the error message.
    """
    file = Path(path)
    if not file.is_file():
        raise TargetError(f"--data {path} not found")
    if file.suffix == ".json":
        try:
            loaded = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TargetError(f"--data {path} is not valid JSON ({error}): pass a list of token-id lists or a probe set") from None
        ids = loaded.get("input_ids") if isinstance(loaded, dict) else loaded
        if not isinstance(ids, list) or not all(isinstance(row, list) for row in ids):
            raise TargetError(f"--data {path}: expected a JSON list of token-id lists or a probe set with input_ids")
        return ids
    if tokenizer is None:
        raise TargetError(f"--data {path} is text, but {owner} has no tokenizer: pass token ids as JSON")
    if file.suffix == ".csv":
        from scmt.data import load_molecules

        try:
            texts = load_molecules(file).texts
        except ValueError as error:
            raise TargetError(f"--data {path}: {error}") from None
    else:
        texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return tokenizer(texts, add_special_tokens=True)["input_ids"]
