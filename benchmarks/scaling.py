"""Data-parallel scaling that this machine allows: 1 against 2 processes on the CPU.

Trains one preset (default ``fast``) to completion twice in one run: as one process
(``mnistseg train``, all cores to one process), and as two processes under
``torchrun --standalone --nproc-per-node 2`` (Gloo, one thread each). Both checkpoints are
evaluated on the full test set. On a 2-core machine two processes cannot be faster than
one that already uses both cores; the figure shows what the Gloo all-reduce costs and that
the distributed run reaches the same quality. It is not a multi-GPU figure.

Usage::

    .venv/bin/python benchmarks/scaling.py --root data
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnistseg.evaluate import evaluate_checkpoint
from record import write_record

CPU = torch.device("cpu")


def run(command: list[str], environment: dict[str, str]) -> float:
    """Run a command to completion; return its wall seconds (stop the benchmark on failure)."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    print(result.stdout, end="", flush=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("--preset", default="fast", help="preset to train (default: fast)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/scaling.json"),
                        help="result file (default: benchmarks/results/scaling.json)")  # fmt: skip
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for processes in (1, 2):
            out = Path(scratch) / f"p{processes}"
            train = ["train", "--preset", args.preset, "--root", str(args.root), "--out", str(out), "--device", "cpu"]
            environment = dict(os.environ)
            if processes == 1:
                command = [sys.executable, "-m", "mnistseg", *train]
            else:
                command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={processes}", "-m", "mnistseg", *train]  # fmt: skip
                environment["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // processes))
            wall = run(command, environment)
            config = json.loads((out / "config.json").read_text())
            train_images = config["recipe"]["epochs"] * 50000
            summary = evaluate_checkpoint(out, args.root, CPU, json_path=out / "t.json", figure_path=out / "t.png")
            rows.append(
                {
                    "processes": processes,
                    "wall_seconds": wall,
                    "images_per_s": train_images / wall,
                    **{key: summary[key] for key in ("tp", "fp", "fn", "iou", "dice")},
                }
            )
    print(f"\n{'processes':>9} {'wall s':>8} {'img/s':>7} {'test IoU':>9} {'vs 1 process':>13}")
    for row in rows:
        row["relative_throughput"] = row["images_per_s"] / rows[0]["images_per_s"]
        print(
            f"{row['processes']:>9} {row['wall_seconds']:>8.1f} {row['images_per_s']:>7.0f} {row['iou']:>9.4f} "
            f"{row['relative_throughput']:>12.2f}x"
        )
    write_record(
        args.json, preset=args.preset, rows=rows, note="CPU processes with Gloo on one machine; not a multi-GPU figure"
    )


if __name__ == "__main__":
    main()
