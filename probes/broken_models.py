"""Small deliberately broken language models, each with one classic causal bug.

Each factory takes no argument and returns an ``nn.Module`` whose forward maps
B×L token ids to B×L×V logits, so the gate can load it as
``probes.broken_models:NAME``. ``causal_reference`` is the same model without
a bug, for comparison.
"""

from __future__ import annotations

import math

import torch
from torch import nn

VOCAB = 40
WIDTH = 32
MAX_LEN = 64


class TinyAttentionLM(nn.Module):
    """Embedding, one self-attention block with a configurable mask, a feed-forward block, a head."""

    def __init__(self, mask: str = "causal", seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.mask = mask
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(MAX_LEN, WIDTH) * 0.1)
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.ff = nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.ReLU(), nn.Linear(4 * WIDTH, WIDTH))
        self.head = nn.Linear(WIDTH, VOCAB)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed

    def attention_bias(self, queries: int, keys: int, offset: int, device) -> torch.Tensor:
        """queries×keys additive bias; query i sits at absolute position offset + i."""
        rows = torch.arange(queries, device=device).unsqueeze(1) + offset
        cols = torch.arange(keys, device=device).unsqueeze(0)
        if self.mask == "none":
            return torch.zeros(queries, keys, device=device)
        if self.mask == "additive_01":
            # The bug: a 0/1 "allowed" mask added to the scores instead of -inf where disallowed.
            return (cols <= rows).float()
        if self.mask == "shifted":
            return torch.zeros(queries, keys, device=device).masked_fill(cols > rows + 1, -math.inf)
        return torch.zeros(queries, keys, device=device).masked_fill(cols > rows, -math.inf)

    def block(self, hidden: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None, offset: int):
        q, k, v = self.qkv(hidden).chunk(3, dim=-1)
        if past is not None:
            k = torch.cat([past[0], k], dim=1)
            v = torch.cat([past[1], v], dim=1)
        bias = self.attention_bias(hidden.shape[1], k.shape[1], offset, hidden.device)
        weights = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(WIDTH) + bias, dim=-1)
        hidden = hidden + self.out(weights @ v)
        return hidden + self.ff(hidden), (k, v)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        hidden, _ = self.block(hidden, None, 0)
        return self.head(hidden)

    def forward_in_pieces(self, input_ids: torch.Tensor, piece_sizes: list[int]) -> torch.Tensor:
        """Feed the sequence in pieces with a key/value cache (the incremental path)."""
        past, start, outputs = None, 0, []
        for size in piece_sizes:
            piece = input_ids[:, start : start + size]
            hidden = self.embed(piece) + self.pos[start : start + size]
            hidden, past = self.block(hidden, past, self.piece_offset(start))
            outputs.append(self.head(hidden))
            start += size
        return torch.cat(outputs, dim=1)

    def piece_offset(self, start: int) -> int:
        return start


class MisalignedIncrementalLM(TinyAttentionLM):
    """Correct full forward, but the cached path forgets the cache length when masking."""

    def piece_offset(self, start: int) -> int:
        # The bug: the causal diagonal is laid as if the piece started at position 0,
        # so a query sees only the first keys of the cache, not its own past.
        return 0


class SequenceNormLM(TinyAttentionLM):
    """Causal attention, then hidden states normalised with statistics over the whole sequence."""

    # No incremental path: the extra layer is not written for a cache.
    forward_in_pieces = None

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        hidden, _ = self.block(hidden, None, 0)
        hidden = (hidden - hidden.mean(dim=1, keepdim=True)) / (hidden.std(dim=1, keepdim=True) + 1e-5)
        return self.head(hidden)


class BatchNormLM(TinyAttentionLM):
    """Causal attention, then BatchNorm1d over batch and time (statistics pooled in train mode)."""

    # No incremental path: the extra layer is not written for a cache.
    forward_in_pieces = None

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(WIDTH)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        hidden, _ = self.block(hidden, None, 0)
        hidden = self.norm(hidden.transpose(1, 2)).transpose(1, 2)
        return self.head(hidden)


class SymmetricConvLM(TinyAttentionLM):
    """Causal attention, then a width-3 convolution padded on both sides of the time axis."""

    # No incremental path: the extra layer is not written for a cache.
    forward_in_pieces = None

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(WIDTH, WIDTH, kernel_size=3, padding=1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) + self.pos[: input_ids.shape[1]]
        hidden, _ = self.block(hidden, None, 0)
        hidden = hidden + self.conv(hidden.transpose(1, 2)).transpose(1, 2)
        return self.head(hidden)


def causal_reference() -> nn.Module:
    return TinyAttentionLM("causal").eval()


def no_causal_mask() -> nn.Module:
    return TinyAttentionLM("none").eval()


def additive_01_mask() -> nn.Module:
    return TinyAttentionLM("additive_01").eval()


def shifted_mask() -> nn.Module:
    return TinyAttentionLM("shifted").eval()


def sequence_norm() -> nn.Module:
    return SequenceNormLM().eval()


def batch_norm() -> nn.Module:
    return BatchNormLM().eval()


def symmetric_conv() -> nn.Module:
    return SymmetricConvLM().eval()


def misaligned_incremental() -> nn.Module:
    return MisalignedIncrementalLM().eval()


#: Each broken factory and the check that must catch it.
EXPECTED_FAILURES = {
    "no_causal_mask": "future_perturbation",
    "additive_01_mask": "future_perturbation",
    "shifted_mask": "future_perturbation",
    "sequence_norm": "future_perturbation",
    "batch_norm": "batch_independence",
    "symmetric_conv": "future_perturbation",
    "misaligned_incremental": "incremental",
}
