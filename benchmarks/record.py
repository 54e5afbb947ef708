"""The JSON record every benchmark writes: what was run, on what, with which versions.

The benchmarks are run as scripts (``python benchmarks/NAME.py``), so Python finds this
module next to them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mnistseg.checkpoint import versions
from mnistseg.device import describe_hardware
from mnistseg.files import atomic_write_json


def write_record(path: Path, **results: Any) -> None:
    """Write ``results`` with the command line, hardware and versions to ``path``, atomically."""
    script = Path(sys.argv[0]).name
    record = {
        "command": " ".join(["python", f"benchmarks/{script}", *sys.argv[1:]]),
        "hardware": describe_hardware(),
        "versions": versions(),
        **results,
    }
    atomic_write_json(path, record)  # creates the folder; never a half-written result
    print(f"wrote {path}")
