"""Where the errors are: FP + FN of trained MNIST checkpoints, split by kind.

Every wrong pixel is one of two kinds (``mnistseg.metrics.error_breakdown``):

* **fg/bg**: foreground and background disagree: one FP or one FN. How many lie within
  0.05 of the threshold says whether they are the threshold rule's hard cases.
* **wrong digit**: a foreground pixel given another digit: one FP *and* one FN. Of these,
  how many belong to **misread images** (most of the digit reads as another digit: a
  classification error) and how many are **split regions** (one connected stroke region
  holding two digits: a per-region vote would mend them; the vote's IoU is shown).

Each checkpoint is run with its recipe's test-time shifts, in the precision this CPU runs
fastest, through the package's one inference path. Use the validation split to compare changes (the default);
the test split only for runs already reported. Usage::

    .venv/bin/python benchmarks/error_analysis.py runs/fast runs/best
    .venv/bin/python benchmarks/error_analysis.py runs/fast --split test
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mnistseg.data import load_arrays, masks_from_images, split_indices
from mnistseg.inference import load_for_inference
from mnistseg.metrics import error_breakdown
from record import benchmark_parser, write_record

BATCH = 1000


def analyse(checkpoint: Path, root: Path, split: str, precision: str = "auto") -> dict[str, Any]:
    """The error breakdown of one checkpoint on ``split`` ("val" or "test"), in ``precision`` (auto: the fastest)."""
    model = load_for_inference(checkpoint, "torch", "cpu", precision=precision)
    record = model.record
    if record.dataset != "mnist":
        raise ValueError(f"{checkpoint} was trained on {record.dataset}; this analysis reads single MNIST digits")
    images, labels = load_arrays(root, train=split != "test")
    if split == "val":
        count = len(labels) if record.recipe.subset is None else min(record.recipe.subset, len(labels))
        _, val_index = split_indices(count, record.recipe.seed)
        images, labels = images[val_index], labels[val_index]
    inputs = images.unsqueeze(1).float() / 255  # (N, 1, 28, 28)
    target = masks_from_images(inputs, labels, record.threshold)
    predicted = torch.cat([model.logits(inputs[start : start + BATCH]).argmax(dim=1) for start in
                           range(0, len(inputs), BATCH)])  # fmt: skip
    breakdown = error_breakdown(inputs, target, predicted.cpu(), record.threshold)  # of the network's own argmax
    return {"checkpoint": str(checkpoint), "split": split, "images": len(labels), "recipe": record.recipe.name,
            "precision": model.precision, "tta": model.tta, **breakdown}  # fmt: skip


def main() -> None:
    parser = benchmark_parser(__doc__, "error_analysis.json")
    parser.add_argument("checkpoints", nargs="+", type=Path, help="run folders written by mnistseg train")
    parser.add_argument("--split", choices=("val", "test"), default="val", help="split to analyse (default: val)")
    args = parser.parse_args()
    rows = [analyse(folder, args.root, args.split) for folder in args.checkpoints]
    header = (f"{'checkpoint':<24} {'IoU':>7} {'FP+FN':>8} {'fg/bg':>7} {'near':>7} {'digit':>7} "
              f"{'misread':>8} {'(pixels)':>9} {'split':>6} {'(pixels)':>9} {'voted IoU':>9}")  # fmt: skip
    print(f"{args.split} split; pixels unless said; 'near': fg/bg errors within 0.05 of the threshold;")
    print("'misread': images whose digit reads as another; 'split': regions holding two digits")
    print(header)
    for row in rows:
        print(
            f"{row['checkpoint'][-24:]:<24} {row['iou']:>7.4f} {row['fp'] + row['fn']:>8,} {row['fg_bg']:>7,} "
            f"{row['fg_bg_near_threshold']:>7,} {row['wrong_digit']:>7,} {row['misread_images']:>8,} "
            f"{row['misread_pixels']:>9,} {row['split_regions']:>6,} {row['split_minority_pixels']:>9,} "
            f"{row['voted_iou']:>9.4f}"
        )
    write_record(args.json, split=args.split, rows=rows)


if __name__ == "__main__":
    main()
