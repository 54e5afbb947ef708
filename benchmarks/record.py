"""The JSON record every benchmark writes: what was run, on what, with which versions.

The benchmarks are run as scripts (``python benchmarks/NAME.py``), so Python finds this
module next to them.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
from pathlib import Path
from typing import Any

from mnistseg.checkpoint import versions
from mnistseg.device import describe_hardware
from mnistseg.files import atomic_write_json


def write_record(path: Path, **results: Any) -> None:
    """Write ``results`` with the command line, date, hardware and versions to ``path``, atomically."""
    script = Path(sys.argv[0]).name
    record = {
        "command": " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),  # UTC
        "hardware": describe_hardware(),
        "versions": versions(),
        **results,
    }
    atomic_write_json(path, record)  # creates the folder; never a half-written result
    print(f"wrote {path}")


def benchmark_parser(doc: str, result_name: str) -> argparse.ArgumentParser:
    """A benchmark's parser with the flags they share: ``--root``, ``--json`` and ``--train-args``.

    Args:
        doc: the script's docstring; its first paragraph is the description.
        result_name: the result file's name under ``benchmarks/results/``.
    """
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    default = Path("benchmarks/results") / result_name
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("--json", type=Path, default=default, help=f"result file (default: {default})")
    parser.add_argument(
        "--train-args", nargs=argparse.REMAINDER, default=[],
        help="extra flags for every mnistseg train, e.g. --subset 600 for a smoke run (default: none); last",
    )  # fmt: skip
    return parser


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one value), as every benchmark table reports them."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
