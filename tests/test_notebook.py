"""The tutorial notebook runs top to bottom (on a small subset), so it never goes stale."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))
from execute import execute  # noqa: E402


def test_the_tutorial_notebook_runs_clean(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stored = nbformat.read(NOTEBOOKS / "segmentation_tutorial.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in stored.cells if cell.cell_type == "code"), "stored with outputs"
    monkeypatch.setenv("MNISTSEG_ROOT", str(data_root))
    monkeypatch.setenv("MNISTSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MNISTSEG_SUBSET", "1200")
    executed = tmp_path / "executed.ipynb"
    execute(NOTEBOOKS / "segmentation_tutorial.ipynb", executed, timeout=300)  # a failing cell raises
    outputs = [output for cell in nbformat.read(executed, as_version=4).cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum(output.output_type == "display_data" for output in outputs) == 4  # its four pictures
    assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file()
