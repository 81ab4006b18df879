"""Configuration of the Schema-Augmented Self-Optimizing Memory Transformer (SCMT).

The first block of fields are those of the published SCMT v0.1.2 config, with
the same names and defaults, so that its flat ``config.json`` files load
unchanged. The causal switches below them select, one leak at a time, between
the published behaviour (all off: *legacy* mode) and an exactly causal model
(all on: *strict* mode).
"""

from __future__ import annotations

from transformers import PreTrainedConfig

#: Keys of the flat ``config.json`` written by the published v0.1.2 code.
REFERENCE_CONFIG_KEYS = (
    "vocab_size",
    "d_model",
    "nhead",
    "num_layers",
    "max_len",
    "mem_size",
    "num_schemas",
    "recency_lambda",
    "entropy_reg_coef",
    "l2_importance_coef",
    "schema_utility_coef",
)

#: The four causal fixes, each a boolean field of :class:`SCMTConfig`.
CAUSAL_SWITCHES = (
    "prefix_entropy_norm",
    "read_as_of_step",
    "zero_empty_read",
    "carry_write_times",
)

MODES = ("legacy", "strict")


class SCMTConfig(PreTrainedConfig):
    r"""
    Configuration of :class:`scmt.SCMTForCausalLM`.

    Args:
        vocab_size: number of token ids.
        d_model: hidden size D.
        nhead: attention heads per encoder layer.
        num_layers: encoder layers.
        max_len: longest sequence (and learned position table length).
        mem_size: episodic memory capacity M, in slots.
        num_schemas: number of learned schema prototypes S.
        recency_lambda: stored for compatibility; the published forward pass never reads it.
        entropy_reg_coef: weight of the entropy auxiliary term (sum of normalised entropy at writes).
        l2_importance_coef: weight of the L2 auxiliary term (mean norm of written keys and values).
        schema_utility_coef: weight of the schema-utility loss.
        dropout: dropout of the encoder layers.
        mem_dropout: dropout applied to the summed schema and instance context.
        prefix_entropy_norm: normalise entropy with statistics of positions <= t only,
            instead of the whole sequence.
        read_as_of_step: the read at position t sees the memory as it stood after step t
            (entries written later or evicted earlier are invisible), instead of the final memory.
        zero_empty_read: a position with no visible memory entry reads a zero vector,
            instead of a uniform average over all slots.
        carry_write_times: carried-in memory keeps each entry's true write time
            (``position_offset - age``), and its empty slots stay empty, instead of the
            published behaviour that takes every slot and uses its age as its timestamp.
        mode: a preset that sets all four switches: ``"legacy"`` (all off) or
            ``"strict"`` (all on). Not stored; read it back with :attr:`causal_mode`.
    """

    model_type = "scmt"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "nhead",
        "num_hidden_layers": "num_layers",
        "max_position_embeddings": "max_len",
    }

    vocab_size: int = 50257
    d_model: int = 256
    nhead: int = 8
    num_layers: int = 4
    max_len: int = 256
    mem_size: int = 128
    num_schemas: int = 32
    recency_lambda: float = 0.01
    entropy_reg_coef: float = 1e-3
    l2_importance_coef: float = 1e-4
    schema_utility_coef: float = 1e-2

    dropout: float = 0.1
    mem_dropout: float = 0.1
    initializer_range: float = 0.02

    prefix_entropy_norm: bool = False
    read_as_of_step: bool = False
    zero_empty_read: bool = False
    carry_write_times: bool = False

    bos_token_id: int | None = 0
    eos_token_id: int | None = 1
    pad_token_id: int | None = 2
    tie_word_embeddings: bool = True

    def __post_init__(self, **kwargs):
        mode = kwargs.pop("mode", None)
        if mode is not None:
            if mode not in MODES:
                raise ValueError(f"invalid mode {mode!r}: use one of {', '.join(MODES)}")
            for name in CAUSAL_SWITCHES:
                setattr(self, name, mode == "strict")
        super().__post_init__(**kwargs)
        self._check_sizes()

    def _check_sizes(self) -> None:
        for name in ("vocab_size", "d_model", "nhead", "num_layers", "max_len", "mem_size", "num_schemas"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name}={value!r}: it must be a positive integer")
        if self.d_model % self.nhead != 0:
            raise ValueError(
                f"invalid d_model={self.d_model} with nhead={self.nhead}: d_model must be a multiple of nhead"
            )

    @property
    def causal_mode(self) -> str:
        """``"legacy"`` (no fix), ``"strict"`` (every fix) or ``"custom"`` (some)."""
        flags = [bool(getattr(self, name)) for name in CAUSAL_SWITCHES]
        if all(flags):
            return "strict"
        if not any(flags):
            return "legacy"
        return "custom"

    @classmethod
    def from_reference_dict(cls, reference: dict, **overrides) -> "SCMTConfig":
        """Build a legacy-mode config from the flat dict of a published v0.1.2 ``config.json``."""
        unknown = sorted(set(reference) - set(REFERENCE_CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"unexpected keys {unknown} in a reference config: expected only {list(REFERENCE_CONFIG_KEYS)}"
            )
        values = {key: reference[key] for key in REFERENCE_CONFIG_KEYS if key in reference}
        values.update(overrides)
        values.setdefault("mode", "legacy")
        return cls(**values)

    def to_reference_dict(self) -> dict:
        """Return the flat dict that the published code writes as ``config.json``."""
        return {key: getattr(self, key) for key in REFERENCE_CONFIG_KEYS}
