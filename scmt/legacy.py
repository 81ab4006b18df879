"""Compatibility with the published SCMT v0.1.2 code: its class, call signature and generation path.

``SchemaAugmentedSOMT`` keeps notebooks written against the published code
working: same constructor arguments, same ``state_dict`` names, same forward
signature and the same 5-tuple return. It wraps :class:`SCMTForCausalLM`, so
hook points and strict mode are available through ``.model``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_checkpoint, save_reference_checkpoint
from .configuration_scmt import REFERENCE_CONFIG_KEYS, SCMTConfig
from .memory import SCMTMemory
from .modeling_scmt import SCMTForCausalLM


class SchemaAugmentedSOMT(nn.Module):
    """The published model class, backed by :class:`SCMTForCausalLM`.

    Build it from an :class:`SCMTConfig`, from the published flat config dict, or
    from its keyword arguments (``vocab_size``, ``d_model``, ...), exactly as the
    published constructor takes them; the default is legacy mode.
    """

    def __init__(self, config: SCMTConfig | dict | None = None, **kwargs) -> None:
        super().__init__()
        if isinstance(config, SCMTConfig):
            if kwargs:
                raise ValueError("pass either an SCMTConfig or keyword arguments, not both")
        elif isinstance(config, dict) or config is None:
            values = dict(config or {})
            values.update(kwargs)
            extra = {k: v for k, v in values.items() if k not in REFERENCE_CONFIG_KEYS}
            reference = {k: v for k, v in values.items() if k in REFERENCE_CONFIG_KEYS}
            config = SCMTConfig.from_reference_dict(reference, **extra)
        else:
            raise ValueError(f"config is a {type(config).__name__}: pass an SCMTConfig, a dict or keyword arguments")
        self.model = SCMTForCausalLM(config)

    @property
    def config(self) -> SCMTConfig:
        return self.model.config

    def state_dict(self, *args, **kwargs):
        """Return the state dict under the published names (``embed.weight``, ``encoder.layers.0...``)."""
        return self.model.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = self.model.load_state_dict(state_dict, strict=strict, assign=assign)
        self.model.tie_weights()
        return result

    def forward(
        self,
        x: torch.Tensor,
        memory_keys: torch.Tensor | None = None,
        memory_vals: torch.Tensor | None = None,
        memory_age: torch.Tensor | None = None,
        step_mode: bool = False,
        global_pos_offset: int = 0,
    ):
        """Return ``(logits, memory_keys, memory_vals, memory_age, aux)`` as the published forward does."""
        given = [tensor is not None for tensor in (memory_keys, memory_vals, memory_age)]
        if any(given) and not all(given):
            raise ValueError("pass memory_keys, memory_vals and memory_age together, or none of them")
        memory = None
        if all(given):
            memory = SCMTMemory.from_legacy(memory_keys, memory_vals, memory_age, position_offset=global_pos_offset)
        out = self.model(x, memory=memory, position_offset=global_pos_offset, step_mode=step_mode)
        aux = dict(out.aux_losses)
        aux["entropy_norm"] = out.entropy_norm
        aux["dynamic_threshold"] = out.dynamic_threshold
        aux["memory_timestamps"] = out.memory.timestamps
        return out.logits, out.memory.keys, out.memory.values, out.memory.ages, aux

    @classmethod
    def from_pretrained(cls, path: str | Path, **config_overrides) -> "SchemaAugmentedSOMT":
        """Load a checkpoint directory of either layout."""
        model = load_checkpoint(path, **config_overrides)
        wrapper = cls.__new__(cls)
        nn.Module.__init__(wrapper)
        wrapper.model = model
        return wrapper

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the published layout (flat config.json and pytorch_model.bin)."""
        return save_reference_checkpoint(self.model, path)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 32, **sampling) -> torch.Tensor:
        """Sample with the published generation path; see :func:`reference_generate`."""
        return reference_generate(self.model, input_ids, max_new_tokens, **sampling)


def sample_next_token(
    logits: torch.Tensor,
    generated: torch.Tensor | None,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw B next tokens from B×V logits the way the published sampler does.

    The repetition penalty divides the logit of every token already generated,
    whatever its sign (as published, so it raises negative logits); then
    temperature, top-k, then top-p (nucleus) filtering.
    """
    logits = logits.clone().float()
    if repetition_penalty != 1.0 and generated is not None and generated.numel():
        seen = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, generated, True)
        logits = torch.where(seen, logits / repetition_penalty, logits)
    logits = logits / max(temperature, 1e-8)
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if top_p < 1.0:
        sorted_logits, sorted_index = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cumulative > top_p
        drop[..., 1:] = drop[..., :-1].clone()
        drop[..., 0] = False
        logits = logits.masked_fill(drop.scatter(1, sorted_index, drop), -float("inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def reference_generate(
    model: SCMTForCausalLM,
    input_ids: torch.Tensor,
    max_new_tokens: int = 32,
    generator: torch.Generator | None = None,
    **sampling,
) -> torch.Tensor:
    """The published generation path: B×(P + max_new_tokens) ids.

    The prompt runs once in step mode with ``position_offset`` = prompt length;
    then each new token is fed alone (encoded at position 0, seeing earlier tokens
    only through memory and schemas), carrying the memory, with the offset growing
    by one a step. So its model is not the one that training scored.
    """
    prompt_length = input_ids.shape[1]
    out = model(input_ids, step_mode=True, position_offset=prompt_length)
    memory = out.memory
    logits = out.logits[:, -1]
    tokens = input_ids
    generated = input_ids.new_zeros((input_ids.shape[0], 0))
    for step in range(max_new_tokens):
        next_token = sample_next_token(logits, generated, generator=generator, **sampling)
        generated = torch.cat([generated, next_token.unsqueeze(1)], dim=1)
        tokens = torch.cat([tokens, next_token.unsqueeze(1)], dim=1)
        out = model(next_token.unsqueeze(1), memory=memory, step_mode=True, position_offset=prompt_length + step + 1)
        memory = out.memory
        logits = out.logits[:, -1]
    return tokens


@torch.no_grad()
def reference_path_logits(model: SCMTForCausalLM, input_ids: torch.Tensor, prompt_length: int = 1) -> torch.Tensor:
    """B×L×V logits of the published generation path, teacher-forced on ``input_ids``.

    Positions before ``prompt_length`` come from the prompt call; each later
    position from a one-token call fed the true token. Compare with a full forward
    to see how far the generation-time model drifts from the trained one.
    """
    length = input_ids.shape[1]
    if not 1 <= prompt_length <= length:
        raise ValueError(f"invalid prompt_length={prompt_length}: it must lie in [1, {length}]")
    out = model(input_ids[:, :prompt_length], step_mode=True, position_offset=prompt_length)
    pieces = [out.logits]
    memory = out.memory
    for position in range(prompt_length, length):
        out = model(input_ids[:, position : position + 1], memory=memory, step_mode=True, position_offset=position + 1)
        memory = out.memory
        pieces.append(out.logits)
    return torch.cat(pieces, dim=1)
