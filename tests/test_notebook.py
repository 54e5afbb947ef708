"""The tutorial notebooks: the English one runs top to bottom (on a small subset); the Japanese one shares its code."""

from __future__ import annotations

import io
import sys
import tokenize
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ENGLISH, JAPANESE = NOTEBOOKS / "segmentation_tutorial.ipynb", NOTEBOOKS / "segmentation_tutorial_ja.ipynb"
sys.path.insert(0, str(NOTEBOOKS))
from execute import execute  # noqa: E402


def code_without_comments(source: str) -> str:
    """The code of a cell with its comments and blank lines removed (strings are kept as they are)."""
    tokens = [token for token in tokenize.generate_tokens(io.StringIO(source).readline)
              if token.type != tokenize.COMMENT]  # fmt: skip
    lines = tokenize.untokenize(tokens).splitlines()
    return "\n".join(line.rstrip() for line in lines if line.strip())


def code_cells(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def test_the_two_editions_share_their_code() -> None:
    english, japanese = code_cells(ENGLISH), code_cells(JAPANESE)
    assert len(english) == len(japanese) >= 10
    for number, (ours, theirs) in enumerate(zip(english, japanese, strict=True), start=1):
        assert code_without_comments(ours) == code_without_comments(theirs), f"code cell {number} differs"
    assert english != japanese  # the comments are translated
    prose = "".join(cell.source for cell in nbformat.read(JAPANESE, as_version=4).cells if cell.cell_type == "markdown")
    assert "学習ループ" in prose or "ループ" in prose


def test_the_comment_stripper_keeps_code_and_strings() -> None:
    assert code_without_comments('x = "# not a comment"  # a comment\n\n# alone\ny = 1\n') == (
        'x = "# not a comment"\ny = 1'
    )


def test_the_stored_english_notebook_shows_its_full_run() -> None:
    cells = nbformat.read(ENGLISH, as_version=4).cells
    code = [cell for cell in cells if cell.cell_type == "code"]
    assert all(cell.get("outputs") for cell in code if "import" in cell.source and "plt.show()" in cell.source)
    text = "".join(output.get("text", "") for cell in code for output in cell.get("outputs", []))
    assert "20,000 train / 4,000 val images" in text  # executed with the fast preset's own data by `make notebook`
    assert "test set: TP" in text and "Traceback" not in text
    assert NOTEBOOKS.joinpath("segmentation_tutorial.ipynb").stat().st_size < 2_000_000


def test_the_tutorial_runs_clean(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The English edition; the Japanese one's code is the same, cell for cell, comments aside
    # (test_the_two_editions_share_their_code), so running it as well ran the same code twice.
    notebook = ENGLISH
    monkeypatch.setenv("MNISTSEG_ROOT", str(data_root))
    monkeypatch.setenv("MNISTSEG_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MNISTSEG_SUBSET", "1200")
    executed = tmp_path / "executed.ipynb"
    lines = []
    execute(notebook, executed, timeout=300, log=lambda line, **_: lines.append(line))  # a failing cell raises
    assert any("6. " in line for line in lines)  # it says which section runs
    cells = nbformat.read(executed, as_version=4).cells
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) == 6  # its six pictures
    # Section 6 writes the loop itself: forward, loss, backward, step, and the counts summed.
    loop = next(cell.source for cell in cells if cell.cell_type == "code" and "loss.backward()" in cell.source)
    for step in ("optimizer.zero_grad()", "criterion(logits, masks)", "optimizer.step()", "tp + counts[0]"):
        assert step in loop
    # fit() shows a progress bar in Jupyter (a widget), then its epoch line.
    assert any("application/vnd.jupyter.widget-view+json" in output.get("data", {}) for output in outputs)
    assert (tmp_path / "runs" / "notebook" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "notebook" / "hardest_test_digits.png").is_file()
