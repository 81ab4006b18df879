"""Loading and saving SCMT checkpoints, in both layouts, with clear errors.

Two layouts are read:

* **HuggingFace** (what this project writes): ``config.json`` with
  ``"model_type": "scmt"`` and ``model.safetensors``; loads with
  ``SCMTForCausalLM.from_pretrained`` or ``AutoModelForCausalLM.from_pretrained``.
* **Reference** (what the published v0.1.2 code writes): a flat ``config.json``
  without ``model_type`` and a ``torch.save``d ``pytorch_model.bin``. It loads as a
  legacy-mode model, through ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import torch

from .configuration_scmt import REFERENCE_CONFIG_KEYS, SCMTConfig
from .modeling_scmt import SCMTForCausalLM

REFERENCE_WEIGHTS = "pytorch_model.bin"
HF_WEIGHTS = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file and the fix."""


def read_config_json(directory: Path) -> dict:
    path = directory / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a checkpoint directory needs a config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}): restore the file or re-save the checkpoint") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} contains a {type(config).__name__}, expected a JSON object")
    return config


def checkpoint_format(path: str | Path) -> str:
    """Return ``"hf"`` or ``"reference"`` for a checkpoint directory; raise CheckpointError otherwise."""
    directory = Path(path)
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} not found")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is a file: pass the checkpoint directory that contains config.json")
    config = read_config_json(directory)
    if "model_type" in config:
        if config["model_type"] != "scmt":
            raise CheckpointError(
                f"{directory} contains a {config['model_type']!r} model, not SCMT: load it with AutoModelForCausalLM"
            )
        return "hf"
    missing = [key for key in ("vocab_size", "d_model") if key not in config]
    if missing:
        raise CheckpointError(
            f"{directory / CONFIG_NAME} has neither model_type nor the reference keys {missing}: "
            f"it is not an SCMT checkpoint"
        )
    return "reference"


def load_reference_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a reference ``pytorch_model.bin`` with ``weights_only=True``; reject anything else."""
    if not path.is_file():
        raise CheckpointError(f"{path} not found: a reference checkpoint needs {REFERENCE_WEIGHTS} beside config.json")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        message = str(error)
        if "GLOBAL" in message:
            found = re.search(r"GLOBAL ([\w.]+)", message)
            blocked = f"it references {found.group(1)}" if found else "it references code"
            raise CheckpointError(
                f"{path} needs arbitrary code to unpickle and was rejected ({blocked}): "
                f"re-save it as a plain state dict of tensors"
            ) from None
        raise CheckpointError(f"{path} is not a readable torch file (corrupt pickle): restore or re-save it") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable torch file ({error}): restore or re-save it") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


def check_state_dict(model: SCMTForCausalLM, state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise CheckpointError when names or shapes in ``state`` do not fit ``model``'s config."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match its config: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{source}: {name} has shape {tuple(tensor.shape)} but the config implies "
                f"{tuple(expected[name].shape)}: the config.json does not match the weights"
            )


def load_reference_checkpoint(path: str | Path, **config_overrides) -> SCMTForCausalLM:
    """Load a published-layout checkpoint directory as a legacy-mode (or overridden) model."""
    directory = Path(path)
    raw = read_config_json(directory)
    unknown = sorted(set(raw) - set(REFERENCE_CONFIG_KEYS))
    if unknown:
        raise CheckpointError(f"{directory / CONFIG_NAME} has keys {unknown} that the reference config does not define")
    try:
        config = SCMTConfig.from_reference_dict(raw, **config_overrides)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {error}") from None
    state = load_reference_state_dict(directory / REFERENCE_WEIGHTS)
    with torch.device("meta"):
        shape_model = SCMTForCausalLM(config)
    check_state_dict(shape_model, state, directory / REFERENCE_WEIGHTS)
    model = SCMTForCausalLM(config)
    model.load_state_dict(state)
    model.tie_weights()
    model.eval()
    return model


def _check_safetensors(directory: Path, config: SCMTConfig) -> None:
    from safetensors import SafetensorError, safe_open

    path = directory / HF_WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path} not found: an SCMT checkpoint needs model.safetensors beside config.json")
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file ({error}): restore or re-save it") from None
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in SCMTForCausalLM(config).state_dict().items()}
    missing = sorted(set(expected) - set(shapes) - {"lm_head.weight"})
    if missing:
        raise CheckpointError(f"{path} lacks {missing[:5]}: the weights do not match config.json")
    for name, shape in shapes.items():
        if name in expected and expected[name] != shape:
            raise CheckpointError(
                f"{path}: {name} has shape {shape} but config.json implies {expected[name]}: "
                f"the config does not match the weights"
            )


def load_checkpoint(path: str | Path, **config_overrides) -> SCMTForCausalLM:
    """Load an SCMT checkpoint directory of either layout, in eval mode.

    ``config_overrides`` (for example ``mode="strict"``) replace config fields, so a
    legacy checkpoint can be run with the causal fixes switched on.
    """
    directory = Path(path)
    layout = checkpoint_format(directory)
    if "mode" in config_overrides and config_overrides["mode"] not in ("legacy", "strict"):
        raise ValueError(f"invalid mode {config_overrides['mode']!r}: use 'legacy' or 'strict'")
    if layout == "reference":
        return load_reference_checkpoint(directory, **config_overrides)

    raw = read_config_json(directory)
    raw.update(config_overrides)
    raw.pop("model_type", None)
    try:
        config = SCMTConfig(**{k: v for k, v in raw.items() if not k.startswith("_") and k != "architectures"})
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {error}") from None
    _check_safetensors(directory, config)
    model = SCMTForCausalLM.from_pretrained(directory, config=config)
    model.eval()
    return model


def save_reference_checkpoint(model: SCMTForCausalLM, path: str | Path) -> Path:
    """Write ``model`` in the published layout (flat config.json and pytorch_model.bin).

    Raises FileExistsError for a directory that already contains a checkpoint.
    """
    directory = Path(path)
    if (directory / CONFIG_NAME).exists() or (directory / REFERENCE_WEIGHTS).exists():
        raise FileExistsError(f"{directory} already contains a checkpoint: choose an empty directory")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_NAME).write_text(json.dumps(model.config.to_reference_dict(), indent=2), encoding="utf-8")
    state = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    torch.save(state, directory / REFERENCE_WEIGHTS)
    return directory
