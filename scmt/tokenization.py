"""The SCMT v0.1.2 SELFIES n-gram tokeniser (longest match over a fixed vocabulary).

Input is a SELFIES string with its symbols separated by single spaces. The
tokeniser scans left to right, skips whitespace, and at each point emits the
longest vocabulary entry that matches the text from there character by
character; where nothing matches it emits that single character's id, or
``<unk>`` when the character is not in the vocabulary either.
"""

from __future__ import annotations

import json
import re
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


# --- HuggingFace tokenizers ------------------------------------------------------------

import os  # noqa: E402

from transformers import PreTrainedTokenizer, PreTrainedTokenizerFast  # noqa: E402

SPECIAL_ORDER = ("<s>", "</s>", "<pad>", "<unk>", "<mask>")
SELFIES_SYMBOL_PATTERN = r"\[[^\]]*\]|\."


class SelfiesNgramTokenizer(PreTrainedTokenizer):
    """The published SELFIES n-gram tokeniser as a ``transformers`` tokenizer.

    Saved into a checkpoint directory as ``ngram_vocab.json``;
    ``AutoTokenizer.from_pretrained(ckpt)`` loads it back once ``scmt`` is imported.
    Encoding wraps the ids in ``<s>`` … ``</s>``, as the published trainer did.
    """

    vocab_files_names = {"vocab_file": "ngram_vocab.json"}
    model_input_names = ["input_ids"]

    def __init__(
        self,
        vocab_file: str | None = None,
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        pad_token: str = "<pad>",
        unk_token: str = "<unk>",
        mask_token: str = "<mask>",
        **kwargs,
    ) -> None:
        self.ngram = NgramTokenizer.from_file(vocab_file)
        super().__init__(
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            unk_token=unk_token,
            mask_token=mask_token,
            **kwargs,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.ngram)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.ngram.vocab)

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        # The vocabulary's n-grams are space-separated symbols, so unspaced SELFIES
        # ("[C][C][O]") are spaced first; spaced input is matched exactly as published.
        if not any(character.isspace() for character in text):
            text = " ".join(re.findall(r"\[[^\]]*\]|.", text))
        tokens = []
        position = 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            token_id, size = self.ngram._longest_match(text, position)
            tokens.append(self.ngram.id_to_token[token_id])
            position += size
        return tokens

    def _convert_token_to_id(self, token: str) -> int:
        return self.ngram.vocab.get(token, self.ngram.unk_token_id)

    def _convert_id_to_token(self, index: int) -> str:
        return self.ngram.id_to_token.get(int(index), "<unk>")

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        ids = [self.bos_token_id, *token_ids_0, self.eos_token_id]
        if token_ids_1 is not None:
            ids += [*token_ids_1, self.eos_token_id]
        return ids

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str]:
        name = (filename_prefix + "-" if filename_prefix else "") + "ngram_vocab.json"
        path = os.path.join(save_directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.ngram.vocab, handle, ensure_ascii=False, indent=0)
        return (path,)


def _special_tokens_kwargs() -> dict[str, str]:
    return {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}


def _wrap_fast(tokenizer) -> PreTrainedTokenizerFast:
    from tokenizers.processors import TemplateProcessing

    tokenizer.post_processor = TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B </s>",
        special_tokens=[("<s>", tokenizer.token_to_id("<s>")), ("</s>", tokenizer.token_to_id("</s>"))],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **_special_tokens_kwargs())


def build_selfies_symbol_tokenizer(selfies_strings: list[str]) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer over every SELFIES symbol seen in ``selfies_strings``.

    Ids 0-4 are the special tokens (``<s>``, ``</s>``, ``<pad>``, ``<unk>``, ``<mask>``),
    then the symbols in sorted order. Input may be spaced or not: symbols are cut at
    brackets and dots, and unknown symbols map to ``<unk>``.
    """
    from tokenizers import Regex, Tokenizer, pre_tokenizers
    from tokenizers.models import WordLevel

    symbols = set()
    pattern = re.compile(SELFIES_SYMBOL_PATTERN)
    for text in selfies_strings:
        symbols.update(pattern.findall(text))
    if not symbols:
        raise ValueError("no SELFIES symbols found: pass SELFIES strings such as '[C][C][O]'")
    vocab = {token: index for index, token in enumerate(SPECIAL_ORDER)}
    for symbol in sorted(symbols):
        vocab.setdefault(symbol, len(vocab))

    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(SELFIES_SYMBOL_PATTERN), behavior="isolated")]
    )
    return _wrap_fast(tokenizer)


def train_bpe_tokenizer(lines: list[str], vocab_size: int = 2000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on a text corpus, with the same five special tokens."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    if vocab_size <= len(SPECIAL_ORDER):
        raise ValueError(f"invalid vocab_size={vocab_size}: it must exceed the {len(SPECIAL_ORDER)} special tokens")
    tokenizer = Tokenizer(BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_ORDER),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(lines, trainer=trainer)
    return _wrap_fast(tokenizer)


def load_ngram_tokenizer(vocab_file: str | Path | None = None) -> SelfiesNgramTokenizer:
    """Load the published n-gram tokenizer over ``vocab_file`` (default: the shipped vocabulary)."""
    return SelfiesNgramTokenizer(vocab_file=str(vocab_file) if vocab_file is not None else str(default_vocab_path()))
