"""Every notebook runs headless on the shipped demo runs and writes its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = {
    "01_causal_leakage": ["leakage_by_check", "leakage_mechanisms", "leakage_profile"],
    "02_schemas": ["schema_readout", "schema_top_ngrams", "schema_map", "schema_drift"],
    "03_memory_dynamics": ["memory_occupancy", "memory_write_rate_by_symbol", "memory_lifetimes"],
    "04_training": ["training_curves", "training_eval_table"],
}


def test_notebooks_stored_without_outputs():
    import nbformat

    for path in NOTEBOOKS.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs, f"{path.name} is stored with outputs"
                assert cell.execution_count is None, path.name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_writes_figures(name, tmp_path, monkeypatch):
    pytest.importorskip("nbclient")
    import sys

    sys.path.insert(0, str(NOTEBOOKS))
    try:
        from run_all import main as run_notebooks
    finally:
        sys.path.pop(0)
    figures = tmp_path / "figures"
    assert run_notebooks(["--figures", str(figures), "--only", name]) == 0
    for figure in EXPECTED[name]:
        for suffix in ("pdf", "png"):
            path = figures / f"{figure}.{suffix}"
            assert path.is_file(), f"{name} did not write {path.name}"
            assert path.stat().st_size > 1000, f"{path.name} is nearly empty"
