"""End-to-end training runs on real molecules: checkpoints, logs, resume, guards, evaluate."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from scmt import SCMTForCausalLM
from scmt import evaluate as evaluate_cli
from scmt.checkpoint import load_checkpoint
from scmt.data import load_probe_set
from scmt.train import main as train

TINY = ["--limit", "300", "--save-steps", "10", "--logging-steps", "5", "--d-model", "32", "--nhead", "4",
        "--num-layers", "2", "--mem-size", "16", "--num-schemas", "8", "--no-progress", "--probe-size", "20"]


@pytest.fixture(scope="module")
def strict_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "strict"
    assert train(["--output-dir", str(run), "--max-steps", "30", *TINY]) == 0
    return run


def test_checkpoints_written(strict_run):
    names = sorted(p.name for p in strict_run.glob("checkpoint-*"))
    assert names == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]
    for name in names:
        checkpoint = strict_run / name
        for required in ("config.json", "model.safetensors", "trainer_state.json", "probe_set.json", "run_config.json", "tokenizer.json"):
            assert (checkpoint / required).is_file(), f"{name}/{required}"


def test_checkpoint_loads_three_ways(strict_run):
    checkpoint = strict_run / "checkpoint-30"
    model = load_checkpoint(checkpoint)
    assert model.config.causal_mode == "strict"
    auto = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert isinstance(auto, SCMTForCausalLM)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert len(tokenizer) == model.config.vocab_size
    ids = torch.tensor([tokenizer("[C][C][O]")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, auto(ids).logits)


def test_log_history_has_every_metric(strict_run):
    state = json.loads((strict_run / "checkpoint-30" / "trainer_state.json").read_text())
    history = state["log_history"]
    train_entries = [entry for entry in history if "loss" in entry]
    eval_entries = [entry for entry in history if "eval_loss" in entry]
    assert len(train_entries) >= 5
    assert len(eval_entries) == 3
    for key in ("lm_loss", "importance_entropy", "importance_l2", "schema_utility", "memory_occupancy",
                "write_rate", "schema_routing_entropy", "schema_utility_ema"):
        assert key in train_entries[-1], key
    last = eval_entries[-1]
    assert last["eval_perplexity"] == pytest.approx(2.718281828 ** last["eval_loss"], rel=1e-6)
    assert 0.0 <= train_entries[-1]["write_rate"] <= 1.0


def test_loss_decreases(strict_run):
    history = json.loads((strict_run / "checkpoint-30" / "trainer_state.json").read_text())["log_history"]
    losses = [entry["lm_loss"] for entry in history if "lm_loss" in entry]
    assert losses[-1] < losses[0]


def test_probe_set_stored(strict_run):
    probe = load_probe_set(strict_run / "checkpoint-30")
    assert len(probe["input_ids"]) == 20
    assert probe == load_probe_set(strict_run)


def test_other_options_refuse_directory(strict_run):
    with pytest.raises(SystemExit, match="different run"):
        train(["--output-dir", str(strict_run), "--max-steps", "30", *TINY[:-2], "--probe-size", "21"])


def test_same_run_needs_resume(strict_run):
    with pytest.raises(SystemExit, match="--resume"):
        train(["--output-dir", str(strict_run), "--max-steps", "30", *TINY])


def test_foreign_directory_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="contains no scmt run"):
        train(["--output-dir", str(tmp_path), "--max-steps", "5", *TINY])
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_continues(tmp_path):
    run = tmp_path / "resumed"
    assert train(["--output-dir", str(run), "--max-steps", "10", *TINY]) == 0
    assert train(["--output-dir", str(run), "--max-steps", "20", "--resume", *TINY]) == 0
    state = json.loads((run / "checkpoint-20" / "trainer_state.json").read_text())
    assert state["global_step"] == 20
    # The history of the first ten steps is kept, not restarted.
    assert any(entry.get("step") == 5 for entry in state["log_history"])


def test_gpt2_baseline_trains(tmp_path):
    run = tmp_path / "gpt2"
    assert train(["--output-dir", str(run), "--model", "gpt2", "--max-steps", "10", *TINY]) == 0
    model = AutoModelForCausalLM.from_pretrained(run / "checkpoint-10")
    assert model.config.model_type == "gpt2"
    assert model.config.n_embd == 32


def test_text_corpus_with_bpe(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the number {i} follows {i - 1}" for i in range(200)))
    run = tmp_path / "text"
    assert train(["--output-dir", str(run), "--data", str(corpus), "--text", "--bpe-vocab-size", "300",
                  "--max-steps", "10", *TINY]) == 0
    record = json.loads((run / "run_config.json").read_text())
    assert record["tokenizer"] == "bpe"
    assert record["data"]["kind"] == "text"


def test_ngram_tokenizer_run(tmp_path):
    run = tmp_path / "ngram"
    assert train(["--output-dir", str(run), "--tokenizer", "ngram", "--mode", "legacy", "--max-steps", "10", *TINY]) == 0
    assert type(AutoTokenizer.from_pretrained(run / "checkpoint-10")).__name__ == "SelfiesNgramTokenizer"
    assert load_checkpoint(run / "checkpoint-10").config.vocab_size == 793


def test_bad_options_exit_cleanly(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        train(["--output-dir", str(tmp_path / "x"), "--seq-len", "300", "--max-len", "256"])
    assert raised.value.code == 2
    assert "--seq-len 300 exceeds --max-len 256" in capsys.readouterr().err


def test_missing_column_exits_cleanly(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles\nCCO\nCCN\n")
    with pytest.raises(SystemExit, match="no column 'SMILES'"):
        train(["--output-dir", str(tmp_path / "run"), "--data", str(data), "--max-steps", "2", *TINY])


def test_evaluate_reports_molecules(strict_run, tmp_path, capsys):
    report_path = tmp_path / "report.json"
    code = evaluate_cli.main([str(strict_run / "checkpoint-30"), "--samples", "16", "--json", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["eval_loss"] > 0
    assert report["sampling"]["samples"] == 16
    assert 0.0 <= report["sampling"]["validity"] <= 1.0
    assert "validity" in capsys.readouterr().out


def test_evaluate_missing_checkpoint(tmp_path, capsys):
    assert evaluate_cli.main([str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_resume_adopts_recorded_options(tmp_path):
    run = tmp_path / "adopt"
    assert train(["--output-dir", str(run), "--max-steps", "10", *TINY]) == 0
    # Only the step budget is repeated; the width and the rest come from run_config.json.
    assert train(["--output-dir", str(run), "--max-steps", "20", "--resume", "--no-progress"]) == 0
    assert json.loads((run / "checkpoint-20" / "config.json").read_text())["d_model"] == 32


def test_resume_with_other_width_refused(tmp_path):
    run = tmp_path / "other"
    assert train(["--output-dir", str(run), "--max-steps", "10", *TINY]) == 0
    with pytest.raises(SystemExit, match="differ from it: d_model"):
        train(["--output-dir", str(run), "--max-steps", "20", "--resume", "--d-model", "64"])


def test_failed_run_leaves_no_directory(tmp_path):
    data = tmp_path / "mols.csv"
    data.write_text("smiles\nCCO\n")
    with pytest.raises(SystemExit):
        train(["--output-dir", str(tmp_path / "never"), "--data", str(data), "--max-steps", "2", *TINY])
    assert not (tmp_path / "never").exists()


def test_eval_fraction_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train(["--output-dir", str(tmp_path / "x"), "--eval-fraction", "1.5"])
    assert "--eval-fraction 1.5" in capsys.readouterr().err
