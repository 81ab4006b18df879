"""The SCMT v0.1.2 SELFIES n-gram tokeniser (longest match over a fixed vocabulary).

Input is a SELFIES string with its symbols separated by single spaces. The
tokeniser scans left to right, skips whitespace, and at each point emits the
longest vocabulary entry that matches the text from there character by
character; where nothing matches it emits that single character's id, or
``<unk>`` when the character is not in the vocabulary either.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}


def default_vocab_path() -> Path:
    """Path of the shipped 793-entry SELFIES n-gram vocabulary."""
    return Path(str(resources.files("scmt") / "data" / "legacy-selfies-ngram-vocab.json"))


class NgramTokenizer:
    """Longest-match tokeniser over a vocabulary of space-separated SELFIES n-grams."""

    def __init__(self, vocab: dict[str, int]) -> None:
        for name, token in SPECIAL_TOKENS.items():
            if token not in vocab:
                raise ValueError(f"vocabulary lacks the special token {token!r} ({name}): add it or use another vocabulary")
        self.vocab = dict(vocab)
        self.id_to_token = {index: token for token, index in vocab.items()}
        self.max_entry_length = max(len(token) for token in vocab)
        self.bos_token_id = vocab["<s>"]
        self.eos_token_id = vocab["</s>"]
        self.pad_token_id = vocab["<pad>"]
        self.unk_token_id = vocab["<unk>"]

    @classmethod
    def from_file(cls, path: str | Path | None = None) -> "NgramTokenizer":
        """Load a ``{token: id}`` JSON vocabulary (default: the shipped one)."""
        path = Path(path) if path is not None else default_vocab_path()
        try:
            vocab = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"vocabulary file not found: {path}") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"vocabulary file {path} is not valid JSON ({error}): restore it") from None
        if not isinstance(vocab, dict) or not all(isinstance(v, int) for v in vocab.values()):
            raise ValueError(f"vocabulary file {path} must hold a JSON object mapping tokens to integer ids")
        return cls(vocab)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of one space-separated SELFIES string, wrapped in ``<s>`` … ``</s>`` by default."""
        ids = [self.bos_token_id] if add_special_tokens else []
        position = 0
        end = len(text)
        while position < end:
            if text[position].isspace():
                position += 1
                continue
            token_id, size = self._longest_match(text, position)
            ids.append(token_id)
            position += size
        if add_special_tokens:
            ids.append(self.eos_token_id)
        return ids

    def _longest_match(self, text: str, position: int) -> tuple[int, int]:
        """Return the id of the longest entry matching at ``position`` and its length in characters."""
        longest = min(self.max_entry_length, len(text) - position)
        for size in range(longest, 0, -1):
            token_id = self.vocab.get(text[position : position + size])
            if token_id is not None:
                return token_id, size
        return self.unk_token_id, 1

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        """Join the entries of ``ids`` with single spaces."""
        specials = set(SPECIAL_TOKENS.values()) if skip_special_tokens else set()
        tokens = [self.id_to_token.get(int(index), "<unk>") for index in ids]
        return " ".join(token for token in tokens if token not in specials)
