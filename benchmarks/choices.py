"""The `fast` preset's choices, decided on the validation split: variants of it, over seeds.

Each variant is a real ``mnistseg train --preset fast`` process with some flags changed,
trained once per seed; the figure is the validation IoU the trainer reports for the saved
checkpoint (the held-out sixth of the training images). The test set is never read here.
The choices of ``best`` (moving average, test-time shifts) are measured on validation by
``time_to_quality.py`` from each ``best`` run's own weights.

Prints a table and writes ``--json`` (default ``benchmarks/results/choices.json``). About
a minute per run on 2 idle CPU cores. Usage::

    .venv/bin/python benchmarks/choices.py --root data --seeds 2
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import benchmark_parser, write_record

# (name, flags for mnistseg train --preset fast); the first is the preset as it stands.
VARIANTS = (
    ("fast (batch 32, lr 2e-3, no affine)", []),
    ("batch 64, lr 3e-3", ["--batch-size", "64", "--lr", "3e-3"]),
    ("batch 128, lr 4e-3", ["--batch-size", "128", "--lr", "4e-3"]),
    ("with the random affine", ["--augment"]),
)


def main() -> None:
    parser = benchmark_parser(__doc__, "choices.json")
    parser.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 per variant (default: 2)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, flags in VARIANTS:
            runs = []
            for seed in range(args.seeds):
                out = Path(scratch) / f"{len(results)}-{seed}"
                command = [sys.executable, "-m", "mnistseg", "train", "--preset", "fast", "--seed", str(seed)]
                command += ["--root", str(args.root), "--out", str(out), "--device", "cpu", *flags, *args.train_args]
                started = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - started
                val_iou = json.loads((out / "config.json").read_text())["best"]["val"]["iou"]
                runs.append({"seed": seed, "val_iou": val_iou, "wall_seconds": wall})
                print(f"{name:<40} seed {seed}: validation IoU {val_iou:.4f}, {wall:.1f} s", flush=True)
            values = [run["val_iou"] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            results.append({"variant": name, "flags": flags, "runs": runs,
                            "val_iou": {"mean": statistics.fmean(values), "std": spread}})  # fmt: skip
    print(f"\n{'variant':<40} validation IoU (mean ± std over {args.seeds} seeds)")
    for result in results:
        print(f"{result['variant']:<40} {result['val_iou']['mean']:.4f} ± {result['val_iou']['std']:.4f}")
    write_record(args.json, seeds=args.seeds, variants=results)


if __name__ == "__main__":
    main()
