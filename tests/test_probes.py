"""Entropy, memory and schema probes on real checkpoints: tables, stored results, provenance."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from probes import entropy as entropy_cli
from probes import memory as memory_cli
from probes import schemas as schemas_cli
from probes.entropy import entropy_probe
from probes.memory import memory_probe
from probes.schemas import fragment_svg, match_schemas, schema_probe
from scmt import SCMTConfig, SCMTForCausalLM
from scmt.checkpoint import save_reference_checkpoint

DEMO = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.fixture()
def strict_copy(tmp_path):
    """A writable copy of the shipped strict demo checkpoint."""
    target = tmp_path / "strict"
    shutil.copytree(DEMO / "demo-strict" / "checkpoint-2717", target, ignore=shutil.ignore_patterns("probe_results"))
    return target


@pytest.fixture()
def legacy_copy(tmp_path):
    target = tmp_path / "legacy"
    shutil.copytree(DEMO / "demo-legacy" / "checkpoint-2717", target, ignore=shutil.ignore_patterns("probe_results"))
    return target


def test_entropy_tables(strict_copy):
    result = entropy_probe(strict_copy, limit=40)
    table = result["per_position"]
    assert {"entropy", "entropy_norm", "threshold", "margin", "wrote", "next_token_loss"} <= set(table.columns)
    assert table["sequence"].nunique() == 40
    assert (table["entropy"] >= 0).all()
    assert table["margin"].equals(table["entropy_norm"] - table["threshold"])
    by_position = result["by_position"]
    assert by_position["count"].iloc[0] == 40
    assert -1.0 <= result.values["pearson_entropy_loss"] <= 1.0
    assert not result.reused


def test_results_stored_and_reused(strict_copy):
    first = entropy_probe(strict_copy, limit=20)
    assert first.path == strict_copy / "probe_results" / "entropy.json"
    again = entropy_probe(strict_copy, limit=20)
    assert again.reused
    assert again["per_position"]["entropy"].tolist() == pytest.approx(first["per_position"]["entropy"].tolist())
    stored = json.loads(first.path.read_text())["provenance"]
    assert stored["probe_version"] == 1
    assert len(stored["checkpoint_fingerprint"]) == 16


def test_stale_result_recomputed(strict_copy):
    entropy_probe(strict_copy, limit=20)
    assert not entropy_probe(strict_copy, limit=21).reused
    assert not entropy_probe(strict_copy, limit=21, seed=1).reused
    assert not entropy_probe(strict_copy, limit=21, seed=1, refresh=True).reused


def test_read_only_checkpoint_uses_cache(strict_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("SCMT_LAB_CACHE", str(tmp_path / "cache"))
    real_access = os.access

    def read_only(path, mode):
        # Root may write anywhere, so the checkpoint is made read-only to the probe alone.
        if Path(path) == strict_copy and mode & os.W_OK:
            return False
        return real_access(path, mode)

    monkeypatch.setattr("probes.common.os.access", read_only)
    result = entropy_probe(strict_copy, limit=10)
    assert str(result.path).startswith(str(tmp_path / "cache"))
    assert not (strict_copy / "probe_results").exists()


def test_memory_trace_is_consistent(legacy_copy):
    result = memory_probe(legacy_copy, limit=30)
    table = result["per_position"]
    assert (table.loc[table["wrote"], "slot"] >= 0).all()
    assert (table.loc[~table["wrote"], "slot"] == -1).all()
    mem_size = result.values["mem_size"]
    assert table["entries_held"].between(0, mem_size).all()
    lifetimes = result["lifetimes"]
    assert (lifetimes["lifetime"] >= 0).all()
    # Each eviction appears once in the per-position trace too.
    assert (table["evicted_written_at"] >= 0).sum() == len(lifetimes)
    assert 0.0 <= result.values["empty_read_rate"] <= 1.0
    assert set(result["write_rate_by_symbol"]["token"]) <= set(table["token"])


def test_schema_probe_tables(strict_copy):
    result = schema_probe(strict_copy, limit=40, top_k=3)
    schemas = result.values["num_schemas"]
    assert len(result["readout"]) == schemas * 3
    assert result["usage"]["share"].sum() == pytest.approx(1.0)
    assert len(result["ablation"]) == schemas
    assert len(result["map"]) == schemas
    assert result["similarity"]["similarity"].between(-1.0001, 1.0001).all()
    ngrams = result["ngrams"]
    assert (ngrams["count"] >= 3).all()
    assert (ngrams["max_weight"] >= ngrams["mean_weight"] - 1e-9).all()
    assert result.values["routing_entropy"] <= result.values["uniform_routing_entropy"] + 1e-6


def test_match_schemas_same_checkpoint_is_identity():
    checkpoint = DEMO / "demo-strict" / "checkpoint-2717"
    matching = match_schemas(checkpoint, checkpoint)
    assert matching["schema_a"].tolist() == matching["schema_b"].tolist()
    assert matching["similarity"].min() == pytest.approx(1.0)


def test_match_schemas_across_training():
    run = DEMO / "demo-strict"
    matching = match_schemas(run / "checkpoint-900", run / "checkpoint-2717")
    assert sorted(matching["schema_b"].tolist()) == list(range(len(matching)))


def test_fragment_pictures():
    assert fragment_svg("[C] [C] [O]").lstrip().startswith("<?xml")
    assert fragment_svg("[Branch1]") is None


def test_reference_checkpoint_with_data(tmp_path):
    torch.manual_seed(0)
    model = SCMTForCausalLM(SCMTConfig(vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4, mode="legacy"))
    save_reference_checkpoint(model, tmp_path / "reference")
    data = tmp_path / "ids.json"
    data.write_text(json.dumps(torch.randint(5, 60, (12, 20), generator=torch.Generator().manual_seed(0)).tolist()))
    assert len(memory_probe(tmp_path / "reference", data=data)["per_position"]) == 12 * 20
    assert schema_probe(tmp_path / "reference", data=data, min_count=1).values["num_schemas"] == 4


@pytest.mark.parametrize("cli", [entropy_cli.main, memory_cli.main, schemas_cli.main])
def test_cli_summaries(cli, strict_copy, capsys):
    assert cli([str(strict_copy), "--limit", "20"]) == 0
    assert str(strict_copy) in capsys.readouterr().out


@pytest.mark.parametrize("cli", [entropy_cli.main, memory_cli.main, schemas_cli.main])
def test_cli_missing_checkpoint(cli, tmp_path, capsys):
    assert cli([str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_checkpoint_without_probe_set(tmp_path, capsys):
    torch.manual_seed(0)
    SCMTForCausalLM(SCMTConfig(vocab_size=60, d_model=32, nhead=4, num_layers=2, mem_size=8, num_schemas=4)).save_pretrained(tmp_path)
    assert entropy_cli.main([str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err
