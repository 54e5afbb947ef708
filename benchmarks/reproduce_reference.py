"""The article's recipe, trained for real: its first epochs beside the article's own log.

Runs ``mnistseg train --preset reference --epochs N`` (default 2) as a process: width 64
with BatchNorm, batch 100, Adam at a constant 1e-3, the random 5:1 split, the article's
random affine through the per-item ``Dataset`` in 4 DataLoader workers, float32. The
learning rate is constant, so the first N epochs are those of the 20-epoch recipe.
Each epoch's validation TP/FP/FN is written beside the counts the article's repository
logged for the same epoch. Its split is another random 5:1 draw of the same 60,000
images, so the counts can only agree statistically, not to the pixel.

About 30 minutes on 2 idle CPU cores. Run it alone: a second torch process on the same
cores slows both several times. Usage::

    .venv/bin/python benchmarks/reproduce_reference.py --root data
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from mnistseg.checkpoint import CheckpointRecord
from record import benchmark_parser, write_record

# Validation counts per epoch from the article's training log; epoch 20's IoU and the test
# counts from the article itself.
ARTICLE_VALIDATION = {
    1: {"tp": 1_156_958, "fp": 24_901, "fn": 106_248},
    2: {"tp": 1_180_674, "fp": 28_520, "fn": 82_532},
}
ARTICLE_EPOCH_20_VALIDATION_IOU = 0.961
ARTICLE_TEST = {"tp": 1_247_593, "fp": 21_385, "fn": 31_288}


def iou(counts: dict[str, int]) -> float:
    return counts["tp"] / (counts["tp"] + counts["fp"] + counts["fn"])


def main() -> None:
    parser = benchmark_parser(__doc__, "reproduce_reference.json")
    parser.add_argument("--epochs", type=int, default=2, help="epochs to train (default: 2)")
    parser.add_argument("--device", default="cpu", help="device for mnistseg train (default: cpu)")
    parser.add_argument("--test", action="store_true",
                        help="then score the best checkpoint on the test set, once (default: off)")  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "reference"
        command = [sys.executable, "-m", "mnistseg", "train", "--preset", "reference", "--epochs", str(args.epochs),
                   "--root", str(args.root), "--out", str(out), "--device", args.device, *args.train_args]  # fmt: skip
        print(" ".join(command[1:]), flush=True)
        started = time.perf_counter()
        result = subprocess.run(command)
        wall = time.perf_counter() - started  # the training process, start to exit
        if result.returncode != 0:
            raise SystemExit(f"mnistseg train failed with exit status {result.returncode}")
        with open(out / "metrics.csv", newline="") as stream:
            rows = list(csv.DictReader(stream))
        config = json.loads((out / "config.json").read_text())
        test = None
        if args.test:
            evaluate = [sys.executable, "-m", "mnistseg", "evaluate", "--checkpoint", str(out), "--root",
                        str(args.root), "--device", args.device, "--json", str(out / "test.json")]  # fmt: skip
            if subprocess.run(evaluate).returncode != 0:
                raise SystemExit("mnistseg evaluate failed")
            summary = json.loads((out / "test.json").read_text())
            test = {key: summary[key] for key in ("tp", "fp", "fn", "iou", "dice")}

    epochs = []
    print(f"\n{'epoch':>5} {'':>9} {'TP':>10} {'FP':>8} {'FN':>8} {'IoU':>7}")
    for row in rows:
        epoch = int(row["epoch"])
        ours = {key: int(row[key]) for key in ("tp", "fp", "fn")}
        entry = {"epoch": epoch, "seconds": float(row["seconds"]), "train_loss": float(row["train_loss"]),
                 "val_loss": float(row["val_loss"]), "mnistseg": {**ours, "iou": iou(ours)}}  # fmt: skip
        lines = [("mnistseg", ours)]
        if epoch in ARTICLE_VALIDATION:
            article = ARTICLE_VALIDATION[epoch]
            entry["article"] = {**article, "iou": iou(article)}
            lines.append(("article", article))
        for source, counts in lines:
            tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
            print(f"{epoch:>5} {source:>9} {tp:>10,} {fp:>8,} {fn:>8,} {iou(counts):>7.4f}")
        epochs.append(entry)
    if test is not None:
        print(
            f"test (best validation epoch {config['best']['epoch']}): TP {test['tp']:,}  FP {test['fp']:,}  "
            f"FN {test['fn']:,}  IoU {test['iou']:.4f}   article: IoU {iou(ARTICLE_TEST):.4f}"
        )
    print(f"\n{wall:.0f} s for the whole process, {sum(entry['seconds'] for entry in epochs):.0f} s in the epochs")
    write_record(
        args.json,
        recipe=asdict(CheckpointRecord.from_json(config).recipe),
        wall_seconds=wall,
        train_seconds=sum(entry["seconds"] for entry in epochs),
        epochs=epochs,
        best_epoch=config["best"]["epoch"],
        test=test,
        article={
            "epoch_20_validation_iou": ARTICLE_EPOCH_20_VALIDATION_IOU,
            "test": ARTICLE_TEST,
            "source": "validation counts of epochs 1-2 from the article's repository log; test counts "
            "from the article's text",
        },  # fmt: skip
    )


if __name__ == "__main__":
    main()
