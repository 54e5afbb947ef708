"""Run a tutorial notebook top to bottom and save it with its outputs (``make notebook``).

Usage::

    python notebooks/execute.py [NOTEBOOK ...] [--out PATH] [--timeout SECONDS]

Without ``--out`` each notebook is rewritten in place with its outputs. It prints each
cell's section as it starts and how long it took, so a long cell is never silent. Set
``MNISTSEG_SUBSET=1200`` (and ``MNISTSEG_ROOT``, ``MNISTSEG_RUNS``) for a quick check.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOKS = (HERE / "segmentation_tutorial.ipynb", HERE / "segmentation_tutorial_ja.ipynb")


def section_titles(document: nbformat.NotebookNode) -> dict[int, str]:
    """For each code cell's index, the last markdown heading above it."""
    titles, current = {}, "setup"
    for index, cell in enumerate(document.cells):
        if cell.cell_type == "markdown":
            headings = [line.lstrip("# ").strip() for line in cell.source.splitlines() if line.startswith("#")]
            current = headings[-1] if headings else current
        else:
            titles[index] = current
    return titles


def execute(notebook: Path, out: Path, timeout: int = 900, log: Any = print) -> None:
    """Execute every cell in the notebook's own folder and write the result to ``out``; a failing cell raises."""
    document = nbformat.read(notebook, as_version=4)
    titles = section_titles(document)
    code_cells = sum(cell.cell_type == "code" for cell in document.cells)
    started = {}

    def on_start(cell: nbformat.NotebookNode, cell_index: int) -> None:
        if cell.cell_type != "code":
            return
        started[cell_index] = time.perf_counter()
        number = sum(c.cell_type == "code" for c in document.cells[: cell_index + 1])
        log(f"  cell {number}/{code_cells}  {titles.get(cell_index, '')} ...", flush=True)

    def on_executed(cell: nbformat.NotebookNode, cell_index: int, execute_reply: Any) -> None:
        if cell_index not in started:
            return
        seconds = time.perf_counter() - started.get(cell_index, time.perf_counter())
        if seconds >= 5:
            log(f"    done in {seconds:.0f} s", flush=True)

    log(f"executing {notebook.name} ({code_cells} code cells)", flush=True)
    NotebookClient(
        document, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}},
        on_cell_start=on_start, on_cell_executed=on_executed,
    ).execute()  # fmt: skip
    nbformat.write(document, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: both tutorials)")
    parser.add_argument("--out", type=Path, help="executed copy, for one notebook (default: in place)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    args = parser.parse_args()
    notebooks = args.notebooks or list(NOTEBOOKS)
    if args.out and len(notebooks) > 1:
        parser.error("--out takes one notebook")
    for notebook in notebooks:
        out = args.out or notebook
        execute(notebook, out, args.timeout)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
