"""Reading molecules and text corpora, seeded splits and encoding."""

from __future__ import annotations

import pytest

from scmt.data import encode_texts, load_molecules, load_text, make_probe_set, split_indices
from scmt.tokenization import build_selfies_symbol_tokenizer


def test_shipped_molecules_convert():
    corpus = load_molecules(limit=50)
    assert corpus.kind == "molecules"
    assert len(corpus.texts) + len(corpus.failed) == 50
    assert all(text.startswith("[") for text in corpus.texts)
    assert len(corpus.smiles) == len(corpus.texts)


def test_failed_smiles_are_counted(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("SMILES\nCCO\nC1CC\nc1ccccc1\n")
    corpus = load_molecules(path)
    assert corpus.failed == ["C1CC"]
    assert len(corpus.texts) == 2


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "mols.csv"
    path.write_text("smiles\nCCO\n")
    with pytest.raises(ValueError, match="no column 'SMILES'"):
        load_molecules(path)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_molecules(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_molecules(tmp_path / "nope.csv")


def test_text_corpus_skips_blank_lines(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("first line\n\nsecond line\n")
    assert load_text(path).texts == ["first line", "second line"]


def test_split_is_seeded_and_disjoint():
    train, held_out = split_indices(100, seed=3)
    again = split_indices(100, seed=3)
    assert (train, held_out) == again
    assert len(held_out) == 10
    assert not set(train) & set(held_out)
    assert split_indices(100, seed=4) != (train, held_out)


def test_encoding_truncates_and_counts():
    tokenizer = build_selfies_symbol_tokenizer(["[C][C][C][C][O]"])
    encoded = encode_texts(tokenizer, ["[C][C][C][C][O]", "[C]"], seq_len=4)
    assert encoded.truncated == 1
    assert encoded.input_ids.shape == (2, 4)
    assert encoded.input_ids[1].tolist()[-1] == tokenizer.pad_token_id


def test_probe_set_is_seeded():
    tokenizer = build_selfies_symbol_tokenizer(["[C][O]", "[N]"])
    texts = ["[C][O]", "[N]", "[C]", "[O][O]"] * 10
    first = make_probe_set(tokenizer, texts, seed=1, size=8)
    assert first == make_probe_set(tokenizer, texts, seed=1, size=8)
    assert len(first["input_ids"]) == 8
    assert isinstance(first["input_ids"][0][0], int)
