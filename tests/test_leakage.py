"""The leakage gate on real checkpoints, reference-format weights and deliberately broken models."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch

from probes import broken_models
from probes.leakage import CHECKS, main as gate, run_gate
from probes.targets import load_target, resolve_targets
from scmt import SCMTConfig, SCMTForCausalLM
from scmt.checkpoint import save_reference_checkpoint

from .conftest import reference_fixture

DEMO = Path(__file__).resolve().parents[1] / "checkpoints"
LEGACY = DEMO / "demo-legacy" / "checkpoint-2717"
STRICT = DEMO / "demo-strict" / "checkpoint-2717"
GPT2 = DEMO / "demo-gpt2" / "checkpoint-2717"
QUICK = ["--no-progress", "--trials", "96"]


def test_legacy_demo_fails_with_mechanisms(tmp_path):
    report_path = tmp_path / "report.json"
    assert gate([str(LEGACY), *QUICK, "--json", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "leak"
    perturbation = report["checks"]["future_perturbation"]
    assert perturbation["status"] == "leak"
    assert perturbation["leaking"] > 0
    assert perturbation["worst"]["prefix"].startswith("<s>")
    assert report["checks"]["padding"]["status"] == "leak"
    assert report["checks"]["batch_independence"]["status"] == "pass"
    named = {fix for mechanism in report["mechanisms"] for fix in mechanism["fixed_by"]}
    assert "prefix_entropy_norm" in named
    assert sum(mechanism["share"] for mechanism in report["mechanisms"]) == pytest.approx(1.0)


@pytest.mark.parametrize("checkpoint", [STRICT, GPT2], ids=["strict", "gpt2"])
def test_causal_demos_pass(checkpoint, tmp_path):
    report_path = tmp_path / "report.json"
    assert gate([str(checkpoint), *QUICK, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    for name in CHECKS:
        assert report["checks"][name]["status"] == "pass", name
        assert report["checks"][name]["trials"] > 0, name
    assert report["dtype"] == "float64"


def test_reference_format_checkpoint_fails(tmp_path):
    fixture = reference_fixture("tiny_prune")
    model = SCMTForCausalLM(SCMTConfig.from_reference_dict(fixture["config"]))
    model.load_state_dict(fixture["state_dict"])
    save_reference_checkpoint(model, tmp_path / "reference")
    report_path = tmp_path / "report.json"
    assert gate([str(tmp_path / "reference"), *QUICK, "--json", str(report_path)]) == 1
    report = json.loads(report_path.read_text())
    assert report["data_source"] == "random tokens"
    assert report["mechanisms"], "a reference checkpoint's leaks should be attributed"


@pytest.mark.parametrize("factory,check", sorted(broken_models.EXPECTED_FAILURES.items()))
def test_broken_model_caught(factory, check):
    report = run_gate(load_target(f"probes.broken_models:{factory}"), trials=96)
    assert report.checks[check].status == "leak", f"{factory} should fail {check}"


def test_causal_reference_model_passes():
    report = run_gate(load_target("probes.broken_models:causal_reference"), trials=96)
    assert not report.leaked
    assert report.checks["incremental"].status == "pass"


def test_same_seed_same_report(tmp_path):
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    gate([str(LEGACY), *QUICK, "--seed", "3", "--json", str(first)])
    gate([str(LEGACY), *QUICK, "--seed", "3", "--json", str(second)])
    assert first.read_text() == second.read_text()


def test_junit_has_one_case_per_check(tmp_path):
    junit = tmp_path / "gate.xml"
    gate([str(LEGACY), *QUICK, "--junit", str(junit)])
    suite = ElementTree.parse(junit).getroot()
    cases = suite.findall("testcase")
    assert [case.get("name") for case in cases] == list(CHECKS)
    assert suite.get("failures") == "3"
    assert cases[0].find("failure") is not None


def test_runs_directory_expands_to_checkpoints():
    found = resolve_targets(str(DEMO / "demo-strict"))
    assert [Path(path).name for path in found] == ["checkpoint-900", "checkpoint-1800", "checkpoint-2700", "checkpoint-2717"]


def test_float32_option_keeps_precision(tmp_path):
    report_path = tmp_path / "report.json"
    assert gate([str(STRICT), *QUICK, "--float32", "--json", str(report_path)]) == 0
    assert json.loads(report_path.read_text())["dtype"] == "float32"


def test_upper_bound_states_confidence():
    report = run_gate(load_target(str(STRICT)), trials=96, checks=("future_perturbation",))
    check = report.checks["future_perturbation"]
    assert check.leaking == 0
    assert 0 < check.leak_rate_upper_95 < 3.0 / check.trials


@pytest.mark.parametrize(
    "argv,message",
    [
        (["/nonexistent/ckpt"], "not found"),
        ([str(STRICT), "--checks", "future_perturbation,bogus"], "unknown ['bogus']"),
        ([str(STRICT), "--trials", "0"], "--trials 0"),
        ([str(STRICT), "--tolerance", "-1"], "--tolerance -1"),
        (["nosuchmodule_xyz:factory"], "cannot import module"),
        (["probes.broken_models:nothing_here"], "no callable"),
        ([str(STRICT), "--device", "tpu"], "--device tpu"),
        ([str(STRICT), "--data", "/nonexistent.json"], "--data /nonexistent.json not found"),
        ([str(STRICT), "--json", "/nonexistent/dir/report.json"], "create it first"),
        ([str(STRICT), "--junit", "/tmp"], "is a directory"),
        ([str(STRICT), "--checks", ""], "names no check"),
    ],
)
def test_unrunnable_exits_two(argv, message, capsys):
    assert gate(argv + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_corrupt_checkpoint_exits_two(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{broken")
    assert gate([str(tmp_path), "--no-progress"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_bad_data_files_exit_two(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert gate([str(STRICT), "--no-progress", "--data", str(broken)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    csv = tmp_path / "mols.csv"
    csv.write_text("smiles\nCCO\n")
    assert gate([str(STRICT), "--no-progress", "--data", str(csv)]) == 2
    assert "no column 'SMILES'" in capsys.readouterr().err


def test_data_option_takes_token_ids(tmp_path):
    data = tmp_path / "ids.json"
    generator = torch.Generator().manual_seed(0)
    data.write_text(json.dumps(torch.randint(5, 60, (6, 20), generator=generator).tolist()))
    report_path = tmp_path / "report.json"
    assert gate([str(STRICT), *QUICK, "--data", str(data), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert report["data_source"] == "data"
    assert report["sequences"] == 6
