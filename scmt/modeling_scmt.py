"""SCMT: a causal transformer encoder with an entropy-gated episodic memory and schemas.

One forward pass, step by step (B batch rows, L positions, D = d_model,
V = vocab_size, S = num_schemas, M = mem_size):

1. embed tokens and learned positions            h0      B×L×D
2. causal transformer encoder                    enc     B×L×D
3. entropy of the backbone's next-token guess    H       B×L
4. normalise it (whole row, or prefix in strict) Hn      B×L
5. uncertainty-gated queries                     q       B×L×D
6. write threshold from enc and running Hn stats thr     B×L
7. write where Hn > thr; prune to M entries      memory  B×M×D
8. read the memory                               inst    B×L×D
9. attend over the schema prototypes             sch     B×L×D
10. fuse both into the residual stream, LM head  logits  B×L×V

Every step's result passes through a named :class:`~scmt.hooks.HookPoint`.
With all causal switches off the model reproduces the published SCMT v0.1.2
code (legacy mode); with all on (strict mode) the logits at position t depend
only on tokens <= t and on the memory passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_scmt import SCMTConfig
from .hooks import HookPoint
from .memory import (
    SCMTMemory,
    build_pool,
    final_slots,
    gather_final_memory,
    read_as_of_step,
    read_final_memory,
    run_prunes,
    write_events,
)

ENTROPY_EPS = 1e-12


@dataclass
class SCMTState:
    """State that incremental decoding carries from one piece of a sequence to the next.

    Attributes:
        layer_keys, layer_values: per encoder layer, B×H×T×(D/H) attention keys and values
            of the T tokens seen so far.
        entropy: B×T raw entropy of those tokens (for prefix normalisation).
        entropy_norm: B×T normalised entropy (for the threshold's running mean and max).
        memory: the episodic memory after the last token.
        length: T, the number of tokens seen so far (the next piece's position offset).
    """

    layer_keys: list[torch.Tensor]
    layer_values: list[torch.Tensor]
    entropy: torch.Tensor
    entropy_norm: torch.Tensor
    memory: SCMTMemory
    length: int


@dataclass
class SCMTCausalLMOutput(ModelOutput):
    """Output of :class:`SCMTForCausalLM`.

    Attributes:
        loss: total training loss (LM loss plus the three auxiliary terms) when labels are given.
        lm_loss: next-token cross-entropy alone.
        logits: B×L×V next-token logits.
        memory: the episodic memory after the call (:class:`~scmt.memory.SCMTMemory`).
        aux_losses: ``importance_entropy`` and ``importance_l2`` (no gradient, as published)
            and ``schema_utility`` (with gradient), each a scalar tensor.
        entropy_norm: B×L normalised entropy.
        dynamic_threshold: B×L write threshold.
        write_mask: B×L bool, where the memory was written.
        state: the :class:`SCMTState` to pass as ``past_state`` to continue the sequence
            (only with ``use_cache=True`` or ``past_state``).
    """

    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    memory: SCMTMemory | None = None
    aux_losses: dict | None = None
    entropy_norm: torch.Tensor | None = None
    dynamic_threshold: torch.Tensor | None = None
    write_mask: torch.Tensor | None = None
    state: SCMTState | None = None


def _mlp(d_in: int, d_hidden: int, d_out: int, final: nn.Module | None = None) -> nn.Sequential:
    layers = [nn.Linear(d_in, d_hidden), nn.ReLU(), nn.Linear(d_hidden, d_out)]
    if final is not None:
        layers.append(final)
    return nn.Sequential(*layers)


class SCMTEncoder(nn.Module):
    """Stack of post-norm ``nn.TransformerEncoderLayer``s run under a causal mask.

    The full-sequence path calls the torch layers themselves (and so their fused
    kernels); the cached path recomputes the same layer maths for new tokens
    against stored keys and values.
    """

    def __init__(self, config: SCMTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=config.d_model,
                nhead=config.nhead,
                dim_feedforward=4 * config.d_model,
                dropout=config.dropout,
                batch_first=True,
            )
            for _ in range(config.num_layers)
        )
        self.hook_layer_out = nn.ModuleList(HookPoint() for _ in range(config.num_layers))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Encode B×L×D with a causal mask (float, -inf strictly above the diagonal)."""
        length = hidden.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(length, device=hidden.device, dtype=hidden.dtype)
        for layer, hook in zip(self.layers, self.hook_layer_out):
            hidden = hook(layer(hidden, src_mask=mask, is_causal=True))
        return hidden

    def forward_cached(
        self, hidden: torch.Tensor, past_keys: list[torch.Tensor] | None, past_values: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Encode B×l×D new tokens after T cached ones; return them and the grown caches."""
        new_keys, new_values = [], []
        for index, (layer, hook) in enumerate(zip(self.layers, self.hook_layer_out)):
            past_k = past_keys[index] if past_keys else None
            past_v = past_values[index] if past_values else None
            hidden, keys, values = _layer_cached(layer, hidden, past_k, past_v)
            hidden = hook(hidden)
            new_keys.append(keys)
            new_values.append(values)
        return hidden, new_keys, new_values


def _layer_cached(
    layer: nn.TransformerEncoderLayer, x: torch.Tensor, past_k: torch.Tensor | None, past_v: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the maths of a post-norm ``TransformerEncoderLayer`` to new tokens, with a key/value cache."""
    attn = layer.self_attn
    batch, length, d_model = x.shape
    heads = attn.num_heads
    head_dim = d_model // heads

    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias)
    q, k, v = (part.view(batch, length, heads, head_dim).transpose(1, 2) for part in qkv.chunk(3, dim=-1))
    if past_k is not None:
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)

    # Query i (absolute position T + i) may see keys 0 .. T + i.
    total = k.shape[2]
    past = total - length
    allowed = torch.arange(total, device=x.device).unsqueeze(0) <= (torch.arange(length, device=x.device) + past).unsqueeze(1)
    dropout = attn.dropout if layer.training else 0.0
    context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)
    context = context.transpose(1, 2).reshape(batch, length, d_model)

    x = layer.norm1(x + layer.dropout1(attn.out_proj(context)))
    x = layer.norm2(x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(x))))))
    return x, k, v


def entropy_of_logits(logits: torch.Tensor) -> torch.Tensor:
    """B×L entropy in nats of softmax(logits) over the last axis.

    With m = max z and e = exp(z - m): ``H = log Σe + m - Σ e·z / Σe``. It agrees
    with the published ``-Σ p·log(p + 1e-12)`` to about 1e-6, and allocates one
    B×L×V temporary instead of four (fresh large buffers cost page faults on CPU).
    """
    peak = logits.amax(dim=-1, keepdim=True)
    weights = (logits - peak).exp_()
    total = weights.sum(dim=-1)
    dot = weights.mul_(logits).sum(dim=-1)
    return total.log() + peak.squeeze(-1) - dot / total


def normalise_entropy_sequence(entropy: torch.Tensor) -> torch.Tensor:
    """Published normalisation: z-score over all L positions of the row, then a sigmoid."""
    mean = entropy.mean(dim=1, keepdim=True)
    std = entropy.std(dim=1, keepdim=True, unbiased=False)
    return torch.sigmoid((entropy - mean) / (std + ENTROPY_EPS))


def normalise_entropy_prefix(entropy: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
    """Causal normalisation: position t uses the mean and population std of positions <= t.

    ``past`` (B×T) is the entropy of earlier pieces; the result covers only the
    L new positions. Prefix sums run in float64, where E[x²] - E[x]² loses no
    meaningful precision for entropies of a few nats.
    """
    full = entropy if past is None else torch.cat([past, entropy], dim=1)
    length = entropy.shape[1]
    wide = full.double()
    counts = torch.arange(1, full.shape[1] + 1, device=entropy.device, dtype=torch.float64)
    mean = wide.cumsum(dim=1) / counts
    variance = ((wide * wide).cumsum(dim=1) / counts - mean * mean).clamp(min=0)
    mean = mean[:, -length:].to(entropy.dtype)
    std = variance[:, -length:].sqrt().to(entropy.dtype)
    return torch.sigmoid((entropy - mean) / (std + ENTROPY_EPS))


def running_mean_max(values: torch.Tensor, past: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """B×L running mean and running max of ``values`` over positions <= t (``past`` first)."""
    full = values if past is None else torch.cat([past, values], dim=1)
    length = values.shape[1]
    counts = torch.arange(1, full.shape[1] + 1, device=values.device, dtype=values.dtype)
    mean = full.cumsum(dim=1) / counts
    maximum = full.cummax(dim=1).values
    return mean[:, -length:], maximum[:, -length:]


class SCMTPreTrainedModel(PreTrainedModel):
    config_class = SCMTConfig
    config: SCMTConfig
    base_model_prefix = "scmt"
    main_input_name = "input_ids"
    _no_split_modules = ["TransformerEncoderLayer"]

    def _init_weights(self, module: nn.Module) -> None:
        """Xavier-uniform linear layers with zero bias, N(0, 0.02²) embeddings, as published."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            init.xavier_uniform_(module.in_proj_weight)
            init.zeros_(module.in_proj_bias)
        elif isinstance(module, SCMTForCausalLM):
            init.zeros_(module.pos_embed)
            init.normal_(module.schema_keys, mean=0.0, std=std)
            init.normal_(module.schema_vals, mean=0.0, std=std)
            init.zeros_(module.schema_utility_sum)
            init.zeros_(module.schema_usage_count)


class SCMTForCausalLM(SCMTPreTrainedModel):
    """SCMT language model. Parameter names match the published v0.1.2 state dict."""

    _tied_weights_keys = {"lm_head.weight": "embed.weight"}

    def __init__(self, config: SCMTConfig) -> None:
        super().__init__(config)
        d = config.d_model

        self.embed = nn.Embedding(config.vocab_size, d)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.max_len, d))
        self.encoder = SCMTEncoder(config)

        self.query_proj = nn.Linear(d, d)
        self.uncertainty_gate = _mlp(d, 64, d, nn.Sigmoid())
        self.key_proj = nn.Linear(d, d)
        self.value_proj = nn.Linear(d, d)
        self.retrieval_fuse = nn.Linear(d, d)
        self.threshold_net = _mlp(d + 2, 64, 1, nn.Sigmoid())
        # Published but without effect: the published forward computes budget_controller
        # and discards the result, and never calls the router or utility head. Kept so that
        # checkpoints load; not computed here.
        self.budget_controller = _mlp(d, 32, 1, nn.Sigmoid())
        self.importance_net = _mlp(d, 64, 1)
        self.obsolescence_net = _mlp(d, 64, 1)

        self.schema_keys = nn.Parameter(torch.zeros(config.num_schemas, d))
        self.schema_vals = nn.Parameter(torch.zeros(config.num_schemas, d))
        self.register_buffer("schema_utility_sum", torch.zeros(config.num_schemas))
        self.register_buffer("schema_usage_count", torch.zeros(config.num_schemas))
        self.schema_router = _mlp(d, 64, config.num_schemas)
        self.schema_utility_head = _mlp(d, 32, 1)

        self.mem_dropout = nn.Dropout(config.mem_dropout)
        self.lm_head = nn.Linear(d, config.vocab_size, bias=False)
        self._fused_cache: dict[str, tuple] = {}

        self.hook_embed = HookPoint()
        self.hook_encoder_out = HookPoint()
        self.hook_base_logits = HookPoint()
        self.hook_entropy = HookPoint()
        self.hook_entropy_norm = HookPoint()
        self.hook_uncertainty_gate = HookPoint()
        self.hook_query = HookPoint()
        self.hook_threshold = HookPoint()
        self.hook_write = HookPoint()
        self.hook_memory_events = HookPoint()
        self.hook_read_mask = HookPoint()
        self.hook_read_weights = HookPoint()
        self.hook_instance_context = HookPoint()
        self.hook_schema_weights = HookPoint()
        self.hook_schema_context = HookPoint()
        self.hook_fused_context = HookPoint()
        self.hook_logits = HookPoint()

        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        memory: SCMTMemory | None = None,
        position_offset: int = 0,
        step_mode: bool = False,
        labels: torch.Tensor | None = None,
        past_state: SCMTState | None = None,
        use_cache: bool = False,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> SCMTCausalLMOutput:
        """Run the model on B×L token ids.

        Args:
            input_ids: B×L int64 token ids.
            memory: episodic memory carried from an earlier call (None: start empty).
            position_offset: global position of the first token, used for write
                timestamps and read visibility (learned positions still start at 0,
                as published, unless ``past_state`` is given).
            step_mode: process only the last position's memory write (the published
                generation path).
            labels: B×L targets; the loss is next-token cross-entropy on
                ``logits[:, :-1]`` against ``labels[:, 1:]``, ignoring -100 and the pad id,
                plus the auxiliary terms.
            past_state: continue a sequence fed in pieces: the encoder attends to the
                cached tokens, positions and timestamps continue from ``past_state.length``
                and its memory is carried. ``memory`` and ``position_offset`` must then be unset.
            use_cache: return a :class:`SCMTState` to continue from.
            inputs_embeds: B×L×D token embeddings to use instead of ``embed(input_ids)``
                (for gradient checks with respect to the input).
            attention_mask: accepted for API compatibility only when all ones: SCMT
                has no padding mask (pads are ordinary tokens, as published).
        """
        batch, length = self._check_inputs(input_ids, inputs_embeds, attention_mask, past_state, memory, position_offset)
        if labels is not None:
            self._check_labels(labels, batch, length)
        cached = past_state is not None or use_cache
        if past_state is not None:
            memory = past_state.memory
            position_offset = past_state.length
        if memory is not None:
            memory.validate(batch, self.config.mem_size, self.config.d_model)
            memory = memory.detached()
        if past_state is not None and past_state.memory.occupied.device != self.pos_embed.device:
            raise ValueError("past_state lives on another device than the model: move it or the model")

        # 1. Token and position embeddings. Positions restart at 0 each call unless continuing.
        tokens = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        first_position = past_state.length if past_state is not None else 0
        h0 = self.hook_embed(tokens + self.pos_embed[:, first_position : first_position + length])

        # 2. Causal encoder.
        if cached:
            enc, layer_keys, layer_values = self.encoder.forward_cached(
                h0,
                past_state.layer_keys if past_state is not None else None,
                past_state.layer_values if past_state is not None else None,
            )
        else:
            enc = self.encoder(h0)
        enc = self.hook_encoder_out(enc)

        # 3. Entropy of the backbone's own prediction; it only gates writes, so no gradient.
        # _projections applies every linear map of enc (logits, keys, threshold, queries,
        # gate) up front, because small separate GEMMs cost more than one wide one.
        base_logits, new_keys, threshold_hidden, query_base, gate_hidden = self._projections(enc)
        base_logits = self.hook_base_logits(base_logits.detach())
        entropy = self.hook_entropy(entropy_of_logits(base_logits))

        # 4. Normalised entropy.
        past_entropy = past_state.entropy if past_state is not None else None
        if self.config.prefix_entropy_norm:
            entropy_norm = normalise_entropy_prefix(entropy, past_entropy)
        else:
            entropy_norm = normalise_entropy_sequence(entropy)
        entropy_norm = self.hook_entropy_norm(entropy_norm)

        # 5. Queries, sharpened where the gate reads uncertainty in the hidden state.
        gate = self.hook_uncertainty_gate(torch.sigmoid(self.uncertainty_gate[2](torch.relu(gate_hidden))))
        query = self.hook_query(torch.addcmul(query_base, query_base, gate))  # q·(1 + gate)

        # 6. Write threshold from the hidden state and the running mean/max of Hn.
        past_norm = past_state.entropy_norm if past_state is not None and self.config.prefix_entropy_norm else None
        with torch.no_grad():
            running_mean, running_max = running_mean_max(entropy_norm, past_norm)
            # The first layer's enc part came from _projections; add its two entropy columns.
            first = self.threshold_net[0].weight
            d_model = self.config.d_model
            hidden = threshold_hidden.addcmul(running_mean.unsqueeze(-1), first[:, d_model])
            hidden.addcmul_(running_max.unsqueeze(-1), first[:, d_model + 1]).relu_()
            threshold = torch.sigmoid(self.threshold_net[2](hidden)).squeeze(-1)
        threshold = self.hook_threshold(threshold)

        # 7. Write decisions and the memory update; memory maths carries no gradient, as published.
        write = entropy_norm > threshold
        if step_mode:
            write = write & (torch.arange(length, device=write.device) == length - 1)
        write = self.hook_write(write)
        memory_out, pool, events = self._update_memory(memory, new_keys, h0, write, position_offset, step_mode)
        self.hook_memory_events(events)

        # 8. Read the memory.
        if self.config.read_as_of_step:
            read_mask, read_weights = read_as_of_step(
                query,
                pool,
                self.config.mem_size,
                position_offset,
                self.config.zero_empty_read,
                true_timestamps=memory is None or self.config.carry_write_times,
            )
            read_values = pool.values
        else:
            read_mask, read_weights = read_final_memory(query, memory_out, position_offset, self.config.zero_empty_read)
            read_values = memory_out.values
        self.hook_read_mask(read_mask)
        read_weights = self.hook_read_weights(read_weights)
        instance_context = self.hook_instance_context(read_weights @ read_values)

        # 9. Schema prototypes.
        schema_scores = query @ self.schema_keys.t() / math.sqrt(self.config.d_model)
        schema_weights = self.hook_schema_weights(torch.softmax(schema_scores, dim=-1))
        schema_context = self.hook_schema_context(schema_weights @ self.schema_vals)

        # 10. Fuse into the residual stream and predict.
        fused = self.hook_fused_context(self.retrieval_fuse(self.mem_dropout(schema_context + instance_context)))
        logits = self.lm_head(enc + fused)
        logits = self.hook_logits(logits)

        aux = self._auxiliary_losses(schema_weights, entropy_norm, write, pool)
        self._update_schema_buffers(schema_weights)

        loss = lm_loss = None
        if labels is not None:
            lm_loss = self._lm_loss(logits, labels)
            loss = lm_loss + aux["importance_entropy"] + aux["importance_l2"] + aux["schema_utility"]

        state = None
        if cached:
            state = SCMTState(
                layer_keys=layer_keys,
                layer_values=layer_values,
                entropy=entropy if past_entropy is None else torch.cat([past_entropy, entropy], dim=1),
                entropy_norm=entropy_norm if past_norm is None else torch.cat([past_norm, entropy_norm], dim=1),
                memory=memory_out,
                length=position_offset + length,
            )

        return SCMTCausalLMOutput(
            loss=loss,
            lm_loss=lm_loss,
            logits=logits,
            memory=memory_out,
            aux_losses=aux,
            entropy_norm=entropy_norm.detach(),
            dynamic_threshold=threshold.detach(),
            write_mask=write,
            state=state,
        )

    def forward_in_pieces(self, input_ids: torch.Tensor, piece_sizes: list[int] | int) -> torch.Tensor:
        """B×L×V logits of ``input_ids`` fed as consecutive pieces through ``past_state``.

        ``piece_sizes`` is a list of lengths summing to L, or one length repeated.
        In strict mode the result equals one full forward up to float rounding.
        """
        length = input_ids.shape[1]
        if isinstance(piece_sizes, int):
            if piece_sizes < 1:
                raise ValueError(f"invalid piece size {piece_sizes}: it must be at least 1")
            piece_sizes = [piece_sizes] * (length // piece_sizes) + ([length % piece_sizes] if length % piece_sizes else [])
        if sum(piece_sizes) != length or min(piece_sizes) < 1:
            raise ValueError(f"piece sizes {piece_sizes} must be positive and sum to the sequence length {length}")
        state = None
        pieces = []
        start = 0
        for size in piece_sizes:
            out = self(input_ids[:, start : start + size], past_state=state, use_cache=True)
            state = out.state
            pieces.append(out.logits)
            start += size
        return torch.cat(pieces, dim=1)

    def _fused_linear(self, name: str, parts: list[tuple[torch.Tensor, torch.Tensor | None]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the (weight, bias) pairs of several linear maps of one input into one.

        Without autograd the stacked copy is cached until any part changes (its
        version counter moves, as it does on optimiser steps and ``load_state_dict``).
        """
        tracking = torch.is_grad_enabled() and any(w.requires_grad for w, _ in parts)
        key = tuple((weight._version, weight.data_ptr()) for weight, _ in parts) + tuple(
            (bias._version, bias.data_ptr()) for _, bias in parts if bias is not None
        )
        cached = self._fused_cache.get(name)
        if not tracking and cached is not None and cached[0] == key:
            return cached[1], cached[2]
        weight = torch.cat([w for w, _ in parts], dim=0)
        bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for w, b in parts], dim=0)
        if not tracking:
            self._fused_cache[name] = (key, weight, bias)
        return weight, bias

    def _projections(self, enc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Every linear map of the encoder output, in two GEMMs.

        Returns B×L×V base logits, B×L×D memory keys and B×L×64 threshold
        pre-activations (the enc part), all without gradient as published, then the
        B×L×D query projection and B×L×64 gate pre-activations, with gradient.
        The logits get a GEMM of their own so that they are contiguous, because the
        entropy pass is several times slower on a strided view. The four narrow maps
        share one GEMM, with the key and threshold weights detached so that they get
        no gradient; the same GEMM runs with and without autograd, so both give
        bit-identical results.
        """
        d_model = self.config.d_model
        threshold_first = self.threshold_net[0]
        gate_first = self.uncertainty_gate[0]
        parts = [
            (self.key_proj.weight.detach(), self.key_proj.bias.detach()),
            (threshold_first.weight[:, :d_model].detach(), threshold_first.bias.detach()),
            (self.query_proj.weight, self.query_proj.bias),
            (gate_first.weight, gate_first.bias),
        ]
        sizes = [d_model, threshold_first.out_features, d_model, gate_first.out_features]

        with torch.no_grad():
            base_logits = F.linear(enc.detach(), self.lm_head.weight)
        weight, bias = self._fused_linear("narrow", parts)
        keys, threshold_hidden, query_base, gate_hidden = F.linear(enc, weight, bias).split(sizes, dim=-1)
        return base_logits, keys.detach(), threshold_hidden.detach(), query_base, gate_hidden

    def _update_memory(
        self,
        memory: SCMTMemory | None,
        new_keys: torch.Tensor,
        h0: torch.Tensor,
        write: torch.Tensor,
        position_offset: int,
        step_mode: bool,
    ):
        """Apply this call's writes and prunes; return the new memory, the pool and the events."""
        length = write.shape[1]
        with torch.no_grad():
            # Keys come from the encoded state, values from the pre-encoder input (as published).
            new_values = self.value_proj(h0.detach())
            pool = build_pool(memory, new_keys, new_values, write, position_offset, self.config.carry_write_times)
            prunes = run_prunes(
                pool, write, self.config.mem_size, position_offset, self.importance_net, self.obsolescence_net
            )
            final_slot = final_slots(pool, prunes, position_offset)
            carried_ages = memory.ages if memory is not None else None

            def build_memory() -> dict[str, torch.Tensor]:
                return gather_final_memory(
                    pool,
                    final_slot,
                    self.config.mem_size,
                    carried_ages=carried_ages,
                    steps_taken=1 if step_mode else length,
                    last_step=length - 1,
                )

            # Built on first access: the legacy read needs it at once, strict mode only when the caller reads it.
            memory_out = SCMTMemory.deferred(build_memory)
            # Events cost a host sync, so they are only built when someone listens.
            events = None
            if self.hook_memory_events._forward_hooks:
                events = write_events(pool, write, prunes, final_slot, self.config.mem_size)
        return memory_out, pool, events

    def _auxiliary_losses(
        self, schema_weights: torch.Tensor, entropy_norm: torch.Tensor, write: torch.Tensor, pool
    ) -> dict[str, torch.Tensor]:
        """Compute the three published regularisers (the first two without gradient, as published)."""
        config = self.config
        with torch.no_grad():
            written = pool.exists[:, pool.carried :]
            entropy_term = (entropy_norm.detach() * written).sum() * config.entropy_reg_coef
            norms = (pool.keys[:, pool.carried :].norm(dim=-1) + pool.values[:, pool.carried :].norm(dim=-1)) / 2
            l2_term = (norms * written).sum() * config.l2_importance_coef

        alignment = F.cosine_similarity(self.schema_keys, self.schema_vals, dim=-1).clamp(-1, 1)
        activity = schema_weights.mean(dim=(0, 1))
        utility = ((1 - alignment) / 2 * activity).sum() / activity.sum().clamp(min=1e-6)
        return {
            "importance_entropy": entropy_term,
            "importance_l2": l2_term,
            "schema_utility": utility * config.schema_utility_coef,
        }

    @torch.no_grad()
    def _update_schema_buffers(self, schema_weights: torch.Tensor) -> None:
        # Published behaviour: updated on every call, in eval and without grad too.
        activity = schema_weights.detach().mean(dim=(0, 1)).to(self.schema_utility_sum.dtype)
        self.schema_utility_sum.mul_(0.95).add_(0.05 * activity)
        self.schema_usage_count.add_(activity)

    def _lm_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        targets = labels[:, 1:]
        if self.config.pad_token_id is not None:
            targets = targets.masked_fill(targets == self.config.pad_token_id, -100)
        return F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100
        )

    def _check_labels(self, labels: torch.Tensor, batch: int, length: int) -> None:
        if not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (batch, length):
            shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels has shape {shape} but input_ids has ({batch}, {length}): pass one label per input token")
        valid = (labels == -100) | ((labels >= 0) & (labels < self.config.vocab_size))
        if not bool(valid.all()):
            bad = int(labels[~valid][0])
            raise ValueError(
                f"label {bad} is outside the vocabulary [0, {self.config.vocab_size}): use token ids, or -100 to ignore a position"
            )

    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, past_state, memory, position_offset):
        """Validate shapes and values; return (B, L). Raises ValueError naming the bad value."""
        config = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if not isinstance(input_ids, torch.Tensor):
                raise ValueError(f"input_ids is a {type(input_ids).__name__}: pass a B×L torch.LongTensor")
            if input_ids.dim() != 2:
                raise ValueError(
                    f"input_ids has shape {tuple(input_ids.shape)}: pass a 2-D B×L tensor (use unsqueeze(0) for one sequence)"
                )
            if input_ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise ValueError(f"input_ids has dtype {input_ids.dtype}: pass integer token ids")
            batch, length = input_ids.shape
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.d_model:
                raise ValueError(
                    f"inputs_embeds has shape {tuple(inputs_embeds.shape)}: pass B×L×{config.d_model}"
                )
            batch, length = inputs_embeds.shape[:2]
        if batch == 0 or length == 0:
            raise ValueError(f"empty input of shape ({batch}, {length}): pass at least one token per row")
        if input_ids is not None:
            low, high = (int(value) for value in torch.aminmax(input_ids))
            if low < 0 or high >= config.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"token id {bad} is outside the vocabulary [0, {config.vocab_size}): "
                    f"encode with the tokeniser saved with this checkpoint"
                )
        start = past_state.length if past_state is not None else 0
        if start + length > config.max_len:
            raise ValueError(
                f"sequence of {start + length} positions exceeds max_len={config.max_len}: "
                f"truncate the input or feed it as separate calls"
            )
        if past_state is not None and (memory is not None or position_offset != 0):
            raise ValueError("pass either past_state or memory/position_offset, not both: the state carries them")
        if past_state is not None and past_state.memory.batch_size != batch:
            raise ValueError(
                f"past_state contains {past_state.memory.batch_size} rows but input_ids has {batch}: "
                f"continue each sequence with its own state"
            )
        if not isinstance(position_offset, int) or position_offset < 0:
            raise ValueError(f"invalid position_offset={position_offset!r}: pass a non-negative integer")
        if attention_mask is not None and not bool((attention_mask != 0).all()):
            raise ValueError(
                "attention_mask contains zeros, but SCMT has no padding mask (pads are ordinary tokens): "
                "drop attention_mask or remove the padding"
            )
        return batch, length

