"""The two SELFIES tokenizers and the corpus BPE, through AutoTokenizer."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

import scmt  # noqa: F401  (registers the n-gram tokenizer with AutoTokenizer)
from scmt.tokenization import build_selfies_symbol_tokenizer, load_ngram_tokenizer, train_bpe_tokenizer

from .conftest import REFERENCE_FIXTURES


def golden_tokenizer_cases() -> list[tuple[str, list[int]]]:
    path = REFERENCE_FIXTURES / "tokenizer_golden.json"
    if not path.is_file():
        pytest.skip(f"golden tokenizer outputs {path} are absent (they live in ../shared)")
    golden = json.loads(path.read_text())
    return list(zip(golden["selfies_spaced"], golden["input_ids_with_specials"]))


def test_ngram_matches_golden_ids():
    tokenizer = load_ngram_tokenizer()
    for text, ids in golden_tokenizer_cases():
        assert tokenizer(text)["input_ids"] == ids


def test_ngram_round_trips_through_auto_tokenizer(tmp_path):
    load_ngram_tokenizer().save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "SelfiesNgramTokenizer"
    for text, ids in golden_tokenizer_cases():
        assert reloaded(text)["input_ids"] == ids


def test_ngram_accepts_unspaced_selfies():
    tokenizer = load_ngram_tokenizer()
    assert tokenizer("[C][C][=O]")["input_ids"] == tokenizer("[C] [C] [=O]")["input_ids"]


def test_ngram_vocabulary_size():
    assert len(load_ngram_tokenizer()) == 793


def test_symbol_tokenizer_one_id_per_symbol(tmp_path):
    tokenizer = build_selfies_symbol_tokenizer(["[C][C][O]", "[C][=N][Ring1]"])
    ids = tokenizer("[C][=N][O]")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids[-1] == tokenizer.eos_token_id
    assert len(ids) == 5
    assert tokenizer.pad_token_id == 2
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("[C][=N][O]")["input_ids"] == ids


def test_symbol_tokenizer_unknown_symbol():
    tokenizer = build_selfies_symbol_tokenizer(["[C][O]"])
    ids = tokenizer("[C][Xe]")["input_ids"]
    assert ids[2] == tokenizer.unk_token_id


def test_symbol_tokenizer_needs_selfies():
    with pytest.raises(ValueError, match="no SELFIES symbols"):
        build_selfies_symbol_tokenizer(["hello world"])


def test_bpe_tokenizer_round_trips_text():
    lines = ["the cat sat on the mat", "a dog ate the bone", "the cat ate"] * 20
    tokenizer = train_bpe_tokenizer(lines, vocab_size=300)
    ids = tokenizer("the cat ate the mat")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the cat ate the mat"
