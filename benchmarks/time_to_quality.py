"""Time to quality: the reference recipe against the `fast` and `best` presets, one run.

What it measures, all in this one process run on this one machine:

1. The reference recipe's training throughput through its own per-item path
   (``SegmentationMNIST`` + torchvision's ``RandomAffine`` in 4 DataLoader workers, width
   64, float32, batch 100), over ``--reference-batches`` batches after a warm-up, and its
   validation throughput; extrapolated to its 20 epochs (50k train + 10k val images each).
   Running it for real takes hours, which is the point.
2. The ``fast`` and ``best`` presets trained to completion, each as a real
   ``mnistseg train`` process (wall time and peak RSS from ``wait4``), then evaluated on
   the full 10k test set.
3. The trainer's images/s against a bare forward+backward loop of the same model on one
   fixed batch (the data path's overhead), and inference images/s on the test set.

Prints a table and writes the same to ``--json`` (default
``benchmarks/results/time_to_quality.json``). Usage::

    .venv/bin/python benchmarks/time_to_quality.py --root data
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mnistseg.data import BatchedLoader, load_arrays
from mnistseg.device import autocast, describe_hardware
from mnistseg.evaluate import evaluate, evaluate_checkpoint
from mnistseg.model import SimpleUNet
from mnistseg.recipes import get_preset
from mnistseg.storage import load_model
from mnistseg.train import make_batches, train_one_epoch, versions
from record import write_record

CPU = torch.device("cpu")
TARGET_IOU = 0.9594  # the reference's published test IoU
TARGETS = {"fast_speedup": 250.0, "best_iou": 0.990, "best_train_seconds": 600.0, "overhead": 0.10, "rss_gib": 3.0}


def reference_throughput(root: Path, batches: int, warmup: int) -> dict[str, float]:
    """Images/s of the reference recipe's training steps and validation, per-item path."""
    recipe = get_preset("reference")
    torch.manual_seed(recipe.seed)
    model = SimpleUNet.from_config(recipe.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    train_batches, val_batches, train_size, val_size = make_batches(recipe, root, CPU)
    stream = iter(train_batches)
    criterion = nn.CrossEntropyLoss()
    train_one_epoch(model, itertools.islice(stream, warmup), criterion, optimizer, None, CPU)
    started = time.perf_counter()
    train_one_epoch(model, itertools.islice(stream, batches), criterion, optimizer, None, CPU)
    train_ips = batches * recipe.batch_size / (time.perf_counter() - started)
    val_stream = iter(val_batches)
    evaluate(model, itertools.islice(val_stream, 2), 11, CPU)
    started = time.perf_counter()
    evaluate(model, itertools.islice(val_stream, 20), 11, CPU)
    val_ips = 20 * recipe.batch_size / (time.perf_counter() - started)
    epoch_seconds = train_size / train_ips + val_size / val_ips
    return {
        "train_images_per_s": train_ips,
        "val_images_per_s": val_ips,
        "epoch_seconds": epoch_seconds,
        "total_seconds": recipe.epochs * epoch_seconds,
        "measured_batches": batches,
    }


def train_preset(name: str, root: Path, out: Path, extra: list[str]) -> dict[str, Any]:
    """Run ``mnistseg train --preset NAME`` as a process; wall seconds and its peak RSS."""
    command = [sys.executable, "-m", "mnistseg", "train", "--preset", name, "--root", str(root)]
    command += ["--out", str(out), "--device", "cpu", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"mnistseg train --preset {name} failed:\n{output}")
    print(output, end="", flush=True)
    config = json.loads((out / "config.json").read_text())
    recipe = config["recipe"]
    train_images = recipe["epochs"] * int(50000 if recipe["subset"] is None else recipe["subset"] * 5 // 6)
    with open(out / "metrics.csv", newline="") as stream:
        epoch_seconds = sum(float(row["seconds"]) for row in csv.DictReader(stream))
    return {
        "wall_seconds": wall,
        "train_seconds": epoch_seconds,  # the epochs as the trainer timed them, validation included
        "images_per_s": train_images / epoch_seconds,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
    }


def data_path_overhead(root: Path, preset: str, batches: int) -> dict[str, float]:
    """Trainer images/s (batched loader + augmentation) against a bare loop on one batch."""
    recipe = get_preset(preset)
    images, labels = load_arrays(root, train=True)

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = SimpleUNet.from_config(recipe.model).to(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    loader = BatchedLoader(
        images[:50000],
        labels[:50000],
        recipe.batch_size,
        augment=recipe.augment,
        shuffle=True,
        mask_mode=recipe.mask_mode,
    )
    criterion = nn.CrossEntropyLoss()

    model, optimizer = fresh()
    torch.manual_seed(0)
    stream = iter(loader)
    train_one_epoch(model, itertools.islice(stream, 5), criterion, optimizer, None, CPU, recipe.precision, True)
    started = time.perf_counter()
    train_one_epoch(model, itertools.islice(stream, batches), criterion, optimizer, None, CPU, recipe.precision, True)
    trainer_ips = batches * recipe.batch_size / (time.perf_counter() - started)

    model, optimizer = fresh()
    fixed_images, fixed_masks = next(iter(loader))
    fixed_images = fixed_images.contiguous(memory_format=torch.channels_last)

    def bare_step() -> None:
        with autocast(CPU, recipe.precision):
            logits = model(fixed_images)
        loss = criterion(logits.float(), fixed_masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()

    for _ in range(5):
        bare_step()
    started = time.perf_counter()
    for _ in range(batches):
        bare_step()
    bare_ips = batches * recipe.batch_size / (time.perf_counter() - started)
    return {"trainer_images_per_s": trainer_ips, "bare_images_per_s": bare_ips, "overhead": 1 - trainer_ips / bare_ips}


def inference_speed(root: Path, checkpoint: Path) -> dict[str, float]:
    """Test-set images/s of the evaluation loop, float32 and bf16 channels_last."""
    images, labels = load_arrays(root, train=False)
    result = {}
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        net, _ = load_model(checkpoint)  # a fresh copy: .to(memory_format=...) converts in place
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        batches = BatchedLoader(images, labels, 1000)
        started = time.perf_counter()
        evaluate(net, batches, 11, CPU, precision, channels_last)
        result[f"{precision}_images_per_s"] = len(labels) / (time.perf_counter() - started)
    return result


COLUMNS = (  # (key, title, format)
    ("preset", "preset", "<10"), ("wall_seconds", "wall s", ">8.1f"), ("train_seconds", "train s", ">8.1f"),
    ("images_per_s", "img/s", ">7.0f"),
    ("peak_rss_gib", "RSS GiB", ">8.2f"), ("tp", "TP", ">10,"), ("fp", "FP", ">7,"), ("fn", "FN", ">7,"),
    ("iou", "IoU", ">7.4f"), ("dice", "Dice", ">7.4f"), ("speedup_vs_reference", "speed-up", ">8.0f"),
)  # fmt: skip


def format_row(row: dict[str, Any] | None) -> str:
    """One line of the result table; the header line for ``None``."""
    if row is None:
        return " ".join(f"{title:{spec[0]}{spec[1:].split('.')[0].rstrip(',')}}" for _, title, spec in COLUMNS)
    return " ".join(f"{row[key]:{spec}}" for key, _, spec in COLUMNS) + "x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/time_to_quality.json"),
                        help="result file (default: benchmarks/results/time_to_quality.json)")  # fmt: skip
    parser.add_argument("--reference-batches", type=int, default=30, help="timed reference batches (default: 30)")
    parser.add_argument("--presets", nargs="+", default=["fast", "best"], help="presets to train (default: fast best)")
    parser.add_argument(
        "--train-args", nargs=argparse.REMAINDER, default=[],
        help="extra flags for mnistseg train, e.g. --subset 600 --epochs 1 for a smoke run (default: none)",
    )  # fmt: skip
    args = parser.parse_args()

    print(f"hardware: {describe_hardware()}\nversions: {versions()}", flush=True)
    print(f"measuring the reference recipe over {args.reference_batches} batches ...", flush=True)
    reference = reference_throughput(args.root, args.reference_batches, warmup=3)
    print(
        f"reference: {reference['train_images_per_s']:.1f} train images/s, {reference['val_images_per_s']:.1f} val "
        f"images/s -> {reference['epoch_seconds']:.0f} s an epoch, {reference['total_seconds']:.0f} s for 20 epochs",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.presets:
            out = Path(scratch) / name
            run = train_preset(name, args.root, out, args.train_args)
            summary = evaluate_checkpoint(out, args.root, CPU, json_path=out / "test.json", figure_path=out / "t.png")
            rows.append(
                {
                    "preset": name,
                    **run,
                    "speedup_vs_reference": reference["total_seconds"] / run["wall_seconds"],
                    **{key: summary[key] for key in ("tp", "fp", "fn", "iou", "dice", "tta")},
                    "data_path": data_path_overhead(args.root, name, batches=40),
                }
            )
        inference = inference_speed(args.root, Path(scratch) / args.presets[0])

    published = {"tp": 1247593, "fp": 21385, "fn": 31288, "iou": 0.9595, "dice": 0.9793}
    reference_row = {"preset": "reference", "wall_seconds": reference["total_seconds"],
                     "train_seconds": reference["total_seconds"],
                     "images_per_s": reference["train_images_per_s"], "peak_rss_gib": float("nan"),
                     "speedup_vs_reference": 1.0, **published}  # fmt: skip
    print("\n" + format_row(None))
    print(format_row(reference_row) + "  (time extrapolated; counts as published)")
    for row in rows:
        print(format_row(row))
    print()
    for row in rows:
        path = row["data_path"]
        print(
            f"data path ({row['preset']}): trainer {path['trainer_images_per_s']:.0f} images/s vs bare loop "
            f"{path['bare_images_per_s']:.0f} images/s: overhead {path['overhead']:.1%}"
        )
    print(
        f"inference ({args.presets[0]}, test set): {inference['fp32_images_per_s']:.0f} images/s fp32, "
        f"{inference['bf16_images_per_s']:.0f} images/s bf16 channels_last"
    )
    by_name = {row["preset"]: row for row in rows}
    checks = {}
    if "fast" in by_name:
        fast = by_name["fast"]
        checks["fast: test IoU >= 0.9594"] = fast["iou"] >= TARGET_IOU
        checks[f"fast: >= {TARGETS['fast_speedup']:.0f}x less wall time"] = (
            fast["speedup_vs_reference"] >= TARGETS["fast_speedup"]
        )
    if "best" in by_name:
        best = by_name["best"]
        checks["best: test IoU >= 0.990"] = best["iou"] >= TARGETS["best_iou"]
        checks["best: <= 600 s of training"] = best["train_seconds"] <= TARGETS["best_train_seconds"]
    checks["data path overhead <= 10%"] = all(row["data_path"]["overhead"] <= TARGETS["overhead"] for row in rows)
    checks["peak RSS of mnistseg train <= 3 GiB"] = all(row["peak_rss_gib"] <= TARGETS["rss_gib"] for row in rows)
    print("\ntargets:")
    for name, met in checks.items():
        print(f"  [{'met' if met else 'NOT MET'}] {name}")

    print()
    write_record(args.json, reference=reference, presets=rows, inference=inference, targets=checks)


if __name__ == "__main__":
    main()
