"""Run the tutorial notebook top to bottom and save an executed copy (``make notebook``).

Usage::

    python notebooks/execute.py [NOTEBOOK] [--out PATH] [--timeout SECONDS]

Set ``MNISTSEG_SUBSET=1200`` (and ``MNISTSEG_ROOT``, ``MNISTSEG_RUNS``) for a quick check.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def execute(notebook: Path, out: Path, timeout: int = 900) -> None:
    """Execute every cell in the notebook's own folder; a failing cell raises."""
    document = nbformat.read(notebook, as_version=4)
    NotebookClient(
        document, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(notebook.parent)}}
    ).execute()
    nbformat.write(document, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=HERE / "segmentation_tutorial.ipynb")
    parser.add_argument("--out", type=Path, help="executed copy (default: <notebook>.executed.ipynb)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell (default: 900)")
    args = parser.parse_args()
    out = args.out or args.notebook.with_suffix(".executed.ipynb")
    execute(args.notebook, out, args.timeout)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
