"""Rebuild ``reproduce_reference_cuda.json`` from the printed log of a ``reproduce_reference.py`` run.

The 20-epoch CUDA run of ``benchmarks/gpu.sh`` (on a lent H200, 2026-11-27) trained,
evaluated and printed everything, then was stopped by its time limit while printing its
table, before it wrote its JSON. Its log, ``benchmarks/results/gpu_h200_log.txt``, holds
every epoch line of ``mnistseg train`` and the ``mnistseg evaluate`` test line; this
script reads those lines back into the same record, marked with where they came from.
Nothing here is measured anew. Usage::

    python benchmarks/reference_from_log.py benchmarks/results/gpu_h200_log.txt
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from reproduce_reference import ARTICLE_EPOCH_20_VALIDATION_IOU, ARTICLE_TEST, ARTICLE_VALIDATION, iou

EPOCH = re.compile(
    r"^epoch\s+(\d+)/(\d+)\s+train_loss ([\d.]+)\s+val_loss ([\d.]+)\s+TP ([\d,]+)\s+FP ([\d,]+)\s+FN ([\d,]+)"
    r".*?([\d.]+)s$"
)
TEST = re.compile(r"^test set \([\d,]+ images[^)]*\): TP ([\d,]+)\s+FP ([\d,]+)\s+FN ([\d,]+)")
BEST = re.compile(r"^best validation IoU [\d.]+ at epoch (\d+)")


def number(text: str) -> int:
    return int(text.replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("log", type=Path, help="the printed output of benchmarks/gpu.sh")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/reproduce_reference_cuda.json"),
                        help="result file (default: benchmarks/results/reproduce_reference_cuda.json)")  # fmt: skip
    args = parser.parse_args()
    lines = args.log.read_text().splitlines()
    epochs, test, best_epoch = [], None, None
    for line in lines:
        if match := EPOCH.match(line):
            epoch = int(match[1])
            counts = {"tp": number(match[5]), "fp": number(match[6]), "fn": number(match[7])}
            entry = {"epoch": epoch, "seconds": float(match[8]), "train_loss": float(match[3]),
                     "val_loss": float(match[4]), "mnistseg": {**counts, "iou": iou(counts)}}  # fmt: skip
            if epoch in ARTICLE_VALIDATION:
                entry["article"] = {**ARTICLE_VALIDATION[epoch], "iou": iou(ARTICLE_VALIDATION[epoch])}
            epochs.append(entry)
        elif match := TEST.match(line):
            counts = {"tp": number(match[1]), "fp": number(match[2]), "fn": number(match[3])}
            test = {**counts, "iou": iou(counts)}
        elif match := BEST.match(line):
            best_epoch = int(match[1])
    record = {
        "source": f"parsed from {args.log} by benchmarks/reference_from_log.py: the run printed these lines, then "
        "its time limit stopped it before it wrote this file",
        "command": lines[2].strip() if len(lines) > 2 else None,
        "hardware": {"gpu": lines[0].strip() if lines else None},
        "versions": {"torch": lines[1].strip() if len(lines) > 1 else None},
        "recipe": "reference, --loader batched --mask-mode warp (the article's affine and nearest-warped masks, a "
        "batch at a time), float32 with TF32 off",
        "train_seconds": sum(entry["seconds"] for entry in epochs),
        "epochs": epochs,
        "best_epoch": best_epoch,
        "test": test,
        "article": {
            "epoch_20_validation_iou": ARTICLE_EPOCH_20_VALIDATION_IOU,
            "test": {**ARTICLE_TEST, "iou": iou(ARTICLE_TEST)},
        },  # fmt: skip
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"{len(epochs)} epochs, best {best_epoch}, test {test}; wrote {args.json}")


if __name__ == "__main__":
    main()
