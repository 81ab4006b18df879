"""The checkpoint browser in a real Streamlit runtime (AppTest) on copies of the demo runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app" / "main.py")


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for run in ("demo-legacy", "demo-strict", "demo-gpt2"):
        shutil.copytree(REPO / "checkpoints" / run, root / run, ignore=shutil.ignore_patterns("probe_results"))
    return root


def open_app(root: Path, page: str = "Overview", run: str = "demo-legacy") -> AppTest:
    app = AppTest.from_file(APP, default_timeout=180)
    app.run()
    app.text_input(key="root").set_value(str(root)).run()
    app.selectbox(key="run").set_value(run).run()
    app.radio(key="page").set_value(page).run()
    return app


def test_overview_shows_curves(runs_root):
    app = open_app(runs_root)
    assert not app.exception
    assert app.title[0].value == "demo-legacy / checkpoint-2717"
    assert [metric.label for metric in app.metric] == ["parameters", "mode", "vocabulary"]
    assert app.metric[1].value == "legacy"


@pytest.mark.parametrize("page", ["Schemas", "Entropy", "Memory"])
def test_probe_pages_render(runs_root, page):
    app = open_app(runs_root, page, run="demo-strict")
    assert not app.exception
    assert not app.error
    assert len(app.dataframe) >= 1 or page == "Entropy"
    assert (runs_root / "demo-strict" / "checkpoint-2717" / "probe_results").is_dir()


def test_leakage_page_runs_gate(runs_root):
    app = open_app(runs_root, "Leakage")
    assert not app.exception
    if app.button:
        app.button(key="run_gate").click().run()
    assert app.error[0].value.startswith("verdict: leak")
    assert (runs_root / "demo-legacy" / "checkpoint-2717" / "probe_results" / "leakage.json").is_file()


def test_probe_pages_refuse_gpt2(runs_root):
    app = open_app(runs_root, "Memory", run="demo-gpt2")
    assert not app.exception
    assert "need an SCMT checkpoint" in app.warning[0].value


def test_compare_page(runs_root):
    app = open_app(runs_root, "Compare")
    assert not app.exception
    assert any(metric.label == "held-out loss" for metric in app.metric)


def test_missing_root_message(tmp_path):
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input(key="root").set_value(str(tmp_path / "nope")).run()
    assert not app.exception
    assert "not found" in app.error[0].value


def test_root_without_checkpoints(tmp_path):
    app = AppTest.from_file(APP, default_timeout=60)
    app.run()
    app.text_input(key="root").set_value(str(tmp_path)).run()
    assert "holds no checkpoint" in app.error[0].value


def test_typed_smiles_is_traced(runs_root):
    app = open_app(runs_root, "Entropy", run="demo-strict")
    app.text_input(key="typed_molecule").set_value("CCO").run()
    assert not app.exception
    assert not app.error
    assert len(app.get("plotly_chart")) >= 3


def test_invalid_typed_molecule_is_reported(runs_root):
    app = open_app(runs_root, "Entropy", run="demo-strict")
    app.text_input(key="typed_molecule").set_value("C1CC(").run()
    assert not app.exception
    assert "not a valid SMILES" in app.error[0].value


def test_unknown_symbols_warned(runs_root):
    app = open_app(runs_root, "Entropy", run="demo-strict")
    app.text_input(key="typed_molecule").set_value("[C][Xe][C]").run()
    assert not app.exception
    assert any("not in this checkpoint's vocabulary" in warning.value for warning in app.warning)


def test_compare_defaults_to_sidebar_checkpoint(runs_root):
    app = open_app(runs_root, "Compare", run="demo-legacy")
    assert app.selectbox(key="compare_left").value == "demo-legacy/checkpoint-2717"
