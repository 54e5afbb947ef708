"""Time to quality: the reference recipe against the `fast` and `best` presets, over seeds.

What it measures, all in this one run on this one machine:

1. **The reference recipe's cost, two ways.** Its training and validation throughput
   (width 64, float32, batch 100, the article's random affine) over ``--reference-batches``
   batches after a warm-up, (a) through its own per-item path (``SegmentationMNIST`` in 4
   DataLoader workers) and (b) through the in-memory batched path (``--loader batched
   --mask-mode warp``: the same draws and the same warp, a batch at a time). Each is
   extrapolated to the recipe's 20 epochs (50k train + 10k val images each): running it for
   real takes hours (``reproduce_reference.py`` trains its first two epochs).
2. **The presets, per seed.** Each preset is trained by a real ``mnistseg train`` process
   per seed (its wall time start to exit, the trainer's epoch seconds, peak RSS), its
   validation IoU read from ``config.json``, then its test set scored once, in float32 as
   the article scored it.
3. **Choices on validation.** For presets with a moving average, test-time shifts or the
   region vote, the last epoch's raw and averaged weights are scored on the validation
   split, with and without the shifts and the vote: the evidence for those choices, never
   the test set. Each run's test errors are split by kind (``error_analysis.analyse``).
4. **Where the speed-up comes from.** Implementation = reference per-item time / reference
   batched time (same recipe); recipe = reference batched time / ``fast`` process time;
   their product is the headline ratio. Arithmetic (forward + backward FLOPs, counted by
   ``torch.utils.flop_counter``) of each whole recipe beside it.
5. The trainer's images/s against a bare forward+backward loop (the data path's overhead),
   and inference images/s on the test set.
6. **The speed choices of this CPU class.** Each preset trained (``fast`` whole, ``best``
   for one epoch of 10,000 images) with its default precision ("auto"), with fp32, with
   bf16, and without ``channels_last``; and the test set's inference in each precision and
   layout: the default must never be more than 10% slower than the faster of fp32 and bf16.

Run it once per CPU class. On a machine with native bf16 (AVX512-BF16 or AMX), the same
machine runs as an AVX2-only CPU (a laptop without AVX-512) under two variables that PyTorch
and oneDNN read at start-up, and which ``mnistseg.device.cpu_has_native_bf16`` honours::

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 .venv/bin/python benchmarks/time_to_quality.py \
        --root data --seeds 3 --json benchmarks/results/time_to_quality_avx2.json

Prints a table and writes everything to ``--json`` (default
``benchmarks/results/time_to_quality.json``). Usage::

    .venv/bin/python benchmarks/time_to_quality.py --root data --seeds 3
    python3 benchmarks/time_to_quality.py --root data --device cuda --skip-reference   # a GPU
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from error_analysis import analyse
from mnistseg.checkpoint import CheckpointRecord, load_model, versions
from mnistseg.data import BatchedLoader, class_names, load_arrays, split_indices
from mnistseg.device import autocast, describe_hardware, resolve_precision
from mnistseg.evaluate import EVAL_BATCH_SIZE, evaluate, evaluate_checkpoint
from mnistseg.metrics import summarize
from mnistseg.model import SimpleUNet
from mnistseg.postprocess import InferencePolicy
from mnistseg.recipes import FP32_CPU_CHANGES, Recipe, get_preset
from mnistseg.resume import STATE_FILE, load_training_state
from mnistseg.train import make_batches, train_one_epoch
from record import benchmark_parser, mean_std, write_record

CPU = torch.device("cpu")
TARGET_IOU = 0.9594  # the reference's published test IoU
TARGETS = {"fast_speedup": 1000.0, "best_iou": 0.996, "best_train_seconds": 600.0, "best_cost_fraction": 1 / 25,
           "overhead": 0.10, "rss_gib": 3.0, "default_precision_slowdown": 0.10}  # fmt: skip
# The speed choices timed per preset: (label, extra flags). "default" is the preset as it is ("auto").
SPEED_CHOICES = (("default", []), ("fp32", ["--precision", "fp32"]), ("bf16", ["--precision", "bf16"]),
                 ("default, NCHW", ["--no-channels-last"]))  # fmt: skip
# How much of each preset they train: fast as it is, best one epoch of 10,000 images.
SPEED_CHOICE_RUNS = {"fast": [], "best": ["--epochs", "1", "--subset", "12000"]}
TRAIN_IMAGES, VAL_IMAGES = 50_000, 10_000
EVAL_BATCHES = (100, 250, 500, 1000)  # images per batch tried for the evaluation loop


def extrapolated_seconds(train_images_per_s: float, val_images_per_s: float, epochs: int) -> tuple[float, float]:
    """An epoch's seconds (50,000 training and 10,000 validation images at these rates) and ``epochs``' worth."""
    epoch = TRAIN_IMAGES / train_images_per_s + VAL_IMAGES / val_images_per_s
    return epoch, epochs * epoch


def reference_throughput(root: Path, loader: str, batches: int, warmup: int) -> dict[str, float]:
    """Images/s of the reference recipe's training steps and validation through one loader."""
    recipe = replace(get_preset("reference"), loader=loader, mask_mode="warp")
    torch.manual_seed(recipe.seed)
    model = SimpleUNet.from_config(recipe.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    train_batches, val_batches, _, _ = make_batches(recipe, root, CPU)
    stream = iter(train_batches)
    criterion = nn.CrossEntropyLoss()
    train_one_epoch(model, itertools.islice(stream, warmup), criterion, optimizer, None, CPU)
    started = time.perf_counter()
    train_one_epoch(model, itertools.islice(stream, batches), criterion, optimizer, None, CPU)
    train_ips = batches * recipe.batch_size / (time.perf_counter() - started)
    if loader == "batched":  # the validation loader's batches are 1,000 images; time 2000 images
        images, labels = load_arrays(root)
        val_batches = BatchedLoader(images, labels, batch_size=recipe.batch_size)
    val_stream = iter(val_batches)
    evaluate(model, itertools.islice(val_stream, 2), 11, CPU)
    started = time.perf_counter()
    evaluate(model, itertools.islice(val_stream, 20), 11, CPU)
    val_ips = 20 * recipe.batch_size / (time.perf_counter() - started)
    epoch_seconds, total_seconds = extrapolated_seconds(train_ips, val_ips, recipe.epochs)
    return {
        "train_images_per_s": train_ips,
        "val_images_per_s": val_ips,
        "epoch_seconds": epoch_seconds,
        "total_seconds": total_seconds,  # extrapolated from the timed batches
        "measured_batches": batches,
    }


def split_sizes(recipe: Recipe) -> tuple[int, int]:
    """Training and validation images of a recipe, as ``split_indices`` cuts them (5:1 of its images)."""
    train, val = split_indices(recipe.subset or TRAIN_IMAGES + VAL_IMAGES, recipe.seed)
    return len(train), len(val)


def recipe_flops(recipe: Recipe) -> float:
    """Forward + backward FLOPs of a whole recipe: every training image, plus a forward per validation image."""
    model = SimpleUNet.from_config(recipe.model)
    images = torch.zeros(1, 1, 28, 28)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    train = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images)
    forward = counter.get_total_flops()
    train_images, val_images = split_sizes(recipe)
    return recipe.epochs * (train_images * train + val_images * forward)


def train_preset(name: str, seed: int, root: Path, out: Path, device: str, extra: list[str]) -> dict[str, Any]:
    """Run ``mnistseg train --preset NAME --seed SEED`` as a process; its times, peak RSS, validation IoU."""
    command = [sys.executable, "-m", "mnistseg", "train", "--preset", name, "--seed", str(seed), "--root", str(root)]
    command += ["--out", str(out), "--device", device, *extra]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"mnistseg train --preset {name} failed:\n{output}")
    print(output, end="", flush=True)
    config = json.loads((out / "config.json").read_text())
    recipe = CheckpointRecord.from_json(config).recipe
    train_images = recipe.epochs * split_sizes(recipe)[0]
    with open(out / "metrics.csv", newline="") as stream:
        epoch_seconds = sum(float(row["seconds"]) for row in csv.DictReader(stream))
    timings = config.get("timings") or {}
    # Where the whole process's time went: the trainer's own clocks, and the rest (Python and
    # torch start-up, imports, argument parsing, exit) as the difference.
    breakdown = {key: timings.get(key, 0.0) for key in ("setup", "train", "validate", "write")}
    breakdown = {"start-up and imports": wall - sum(breakdown.values()), **breakdown}
    return {
        "wall_seconds": wall,  # the whole process, start to exit
        "train_seconds": epoch_seconds,  # the epochs as the trainer timed them, validation included
        "images_per_s": train_images / epoch_seconds,
        "peak_rss_gib": usage.ru_maxrss / 2**20,
        "val_iou": config["best"]["val"]["iou"],
        "breakdown_seconds": breakdown,
    }


def validation_ablations(out: Path, root: Path, device: torch.device) -> dict[str, float]:
    """Validation IoU of the last epoch's raw and averaged weights, with and without shifts and the region vote."""
    tensors, metadata = load_training_state(out / STATE_FILE)
    recipe = CheckpointRecord.from_json(metadata["config"]).recipe
    _, val_batches, _, _ = make_batches(recipe, root, device)
    names = class_names(recipe.dataset)
    weights = {"raw": {key[len("model.") :]: value for key, value in tensors.items() if key.startswith("model.")}}
    if recipe.ema_decay > 0:
        prefix = "ema.module."
        weights["ema"] = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
    result = {}
    for kind, state in weights.items():
        model = SimpleUNet.from_config(recipe.model)
        model.load_state_dict(state)
        model = model.to(device, memory_format=torch.channels_last if recipe.channels_last else torch.preserve_format)
        precision = resolve_precision(recipe.precision, device)
        for tta, vote in itertools.product((False, True), (False, True)):
            policy = InferencePolicy(tta=tta, vote="region" if vote else "none")
            scored = evaluate(model, val_batches, len(names), device, precision, recipe.channels_last, policy)
            result[f"{kind}{' + shifts' if tta else ''}{' + vote' if vote else ''}"] = summarize(
                scored.confusion, names
            )["iou"]
    return result


def data_path_overhead(root: Path, preset: str, batches: int) -> dict[str, float]:
    """Trainer images/s (batched loader + augmentation) against a bare loop on one batch."""
    recipe = get_preset(preset)
    precision = resolve_precision(recipe.precision, CPU)
    images, labels = load_arrays(root, train=True)

    def fresh() -> tuple[nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        model = SimpleUNet.from_config(recipe.model).to(memory_format=torch.channels_last)
        return model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)  # as the trainer's

    loader = BatchedLoader(
        images[:TRAIN_IMAGES],
        labels[:TRAIN_IMAGES],
        recipe.batch_size,
        augment=recipe.augment,
        shuffle=True,
        mask_mode=recipe.mask_mode,
    )
    criterion = nn.CrossEntropyLoss()
    model, optimizer = fresh()
    stream = iter(loader)
    train_one_epoch(model, itertools.islice(stream, 5), criterion, optimizer, None, CPU, precision, True)
    started = time.perf_counter()
    train_one_epoch(model, itertools.islice(stream, batches), criterion, optimizer, None, CPU, precision, True)
    trainer_ips = batches * recipe.batch_size / (time.perf_counter() - started)

    model, optimizer = fresh()
    fixed_images, fixed_masks = next(iter(loader))
    fixed_images = fixed_images.contiguous(memory_format=torch.channels_last)

    def bare_step() -> None:
        with autocast(CPU, precision):
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


def inference_speed(root: Path, checkpoint: Path) -> dict[str, Any]:
    """Test-set images/s of the evaluation loop in each precision and layout, and what "auto" runs.

    Also, in what "auto" runs and channels-last, the images/s at each of ``EVAL_BATCHES``
    images per batch: the evidence for ``evaluate.EVAL_BATCH_SIZE``.
    """
    images, labels = load_arrays(root, train=False)
    auto = resolve_precision("auto", CPU)

    def images_per_s(precision: str, channels_last: bool, batch_size: int) -> float:
        net, _ = load_model(checkpoint)  # a fresh copy: .to(memory_format=...) converts in place
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        batches = BatchedLoader(images, labels, batch_size)
        evaluate(net, itertools.islice(iter(batches), 1), 11, CPU, precision, channels_last)  # warm-up
        started = time.perf_counter()
        evaluate(net, batches, 11, CPU, precision, channels_last)
        return len(labels) / (time.perf_counter() - started)

    return {
        "auto": auto,
        "batch_size": EVAL_BATCH_SIZE,
        "images_per_s": {
            f"{precision}{'' if channels_last else ', NCHW'}": images_per_s(precision, channels_last, EVAL_BATCH_SIZE)
            for precision, channels_last in itertools.product(("fp32", "bf16"), (True, False))
        },
        "images_per_s_by_batch_size": {str(size): images_per_s(auto, True, size) for size in EVAL_BATCHES},
    }


def own_network_flags(name: str) -> list[str]:
    """Flags that hold a preset's fields that a float32 CPU changes (``FP32_CPU_CHANGES``) at the values
    of its default run on this CPU, so that each precision times that network: ``["--epochs", "12"]``
    for ``best`` where bf16 is native."""
    preset, flags = get_preset(name, CPU), []
    for field in FP32_CPU_CHANGES.get(name, {}):
        value, flag = getattr(preset, field), "--" + field.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return flags


def speed_choices(root: Path, scratch: Path, presets: list[str], extra: list[str]) -> dict[str, dict[str, Any]]:
    """Per preset and speed choice, the trainer's seconds (validation included): the least of two rounds.

    Every choice trains the network of the preset's default run here (:func:`own_network_flags`):
    ``--precision`` alone would also change what a preset changes on a CPU that trains in float32.

    The second round (after all the first) repeats only the choices within 1.5x of the fastest: this
    machine's speed drifts by 10-20% between minutes, and a choice several times slower needs no second look.
    """
    result: dict[str, dict[str, Any]] = {}
    for name in presets:
        result[name] = {}
        for round_ in (1, 2):
            fastest = min((row["train_seconds"] for row in result[name].values()), default=None)
            for label, flags in SPEED_CHOICES:
                if round_ == 2 and result[name][label]["train_seconds"] > 1.5 * fastest:
                    continue
                out = scratch / f"choice-{name}-{label.replace(', ', '-')}-{round_}"
                own = [*own_network_flags(name), *SPEED_CHOICE_RUNS.get(name, [])]  # the later flag wins
                run = train_preset(name, 0, root, out, "cpu", [*own, *flags, *extra])
                ran = json.loads((out / "config.json").read_text())["precision"]
                row = result[name].setdefault(label, {"precision": ran, "rounds": []})
                row["rounds"].append(run["train_seconds"])
                row["train_seconds"] = min(row["rounds"])
                print(f"  speed choice {name} {label}: {ran}, {run['train_seconds']:.1f} s of training", flush=True)
    return result


def default_slowdown(times: dict[str, float]) -> float:
    """How much slower the default is than the faster of fp32 and bf16 (0.05: 5% slower; negative: faster).

    Args:
        times: seconds (or seconds per image) keyed "default", "fp32" and "bf16".
    """
    return times["default"] / min(times["fp32"], times["bf16"]) - 1


SUMMARY_COLUMNS = (
    ("test IoU", "iou"),
    ("val IoU", "val_iou"),
    ("wall s", "wall_seconds"),
    ("train s", "train_seconds"),
)


def plus_minus(label: str, value: dict[str, float]) -> str:
    """``"label 0.9714 ± 0.0012"`` (4 decimals below 1, else 1)."""
    decimals = 4 if abs(value["mean"]) < 1 else 1
    return f"{label} {value['mean']:.{decimals}f} ± {value['std']:.{decimals}f}"


COLUMNS = (  # (key, title, format)
    ("preset", "preset", "<10"),
    ("seed", "seed", ">4"),
    ("wall_seconds", "wall s", ">8.1f"),
    ("train_seconds", "train s", ">8.1f"),
    ("peak_rss_gib", "RSS GiB", ">8.2f"),
    ("val_iou", "val IoU", ">8.4f"),
    ("tp", "TP", ">10,"),
    ("fp", "FP", ">7,"),
    ("fn", "FN", ">7,"),
    ("iou", "test IoU", ">8.4f"),
)


def format_row(row: dict[str, Any] | None) -> str:
    """One line of the per-seed table; the header line for ``None``."""
    if row is None:
        return " ".join(f"{title:{spec[0]}{spec[1:].split('.')[0].rstrip(',')}}" for _, title, spec in COLUMNS)
    return " ".join(f"{row[key]:{spec}}" for key, _, spec in COLUMNS)


def main() -> None:
    parser = benchmark_parser(__doc__, "time_to_quality.json")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per preset (default: 1)")
    parser.add_argument("--device", default="cpu", help="where the presets train and are scored (default: cpu)")
    parser.add_argument("--reference-batches", type=int, default=30, help="timed reference batches (default: 30)")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the reference (default: off)")
    parser.add_argument("--presets", nargs="+", default=["fast", "best"], help="presets to train (default: fast best)")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"

    print(f"hardware: {describe_hardware()}\nversions: {versions()}", flush=True)
    reference: dict[str, Any] = {}
    if not args.skip_reference:
        for loader in ("dataset", "batched"):
            print(f"timing the reference recipe, {loader} loader, {args.reference_batches} batches ...", flush=True)
            reference[loader] = measured = reference_throughput(args.root, loader, args.reference_batches, warmup=3)
            print(
                f"  {measured['train_images_per_s']:.1f} train images/s, {measured['val_images_per_s']:.1f} val "
                f"images/s -> {measured['total_seconds']:.0f} s for 20 epochs (extrapolated)",
                flush=True,
            )

    runs, ablations, summaries = [], {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, seed in itertools.product(args.presets, range(args.seeds)):
            out = Path(scratch) / f"{name}-{seed}"
            run = train_preset(name, seed, args.root, out, args.device, args.train_args)
            test = evaluate_checkpoint(
                out, args.root, device, json_path=out / "test.json", figure_path=out / "t.png", precision="fp32"
            )  # the article's precision, whatever the recipe trained in
            errors = analyse(out, args.root, "test", precision="fp32")  # where that run's errors are
            runs.append(
                {
                    "preset": name,
                    "seed": seed,
                    **run,
                    **{key: test[key] for key in ("tp", "fp", "fn", "iou", "dice", "tta", "vote")},
                    "errors": {key: value for key, value in errors.items() if key not in ("checkpoint", "split")},
                }
            )
            recipe = get_preset(name)
            if recipe.ema_decay > 0 or recipe.tta or recipe.vote != "none":
                ablations.setdefault(name, []).append(validation_ablations(out, args.root, device))
            # What is done so far, in case the run is cut short (a lent GPU's time limit, say).
            write_record(args.json, partial=True, seeds=args.seeds, device=str(device), reference=reference, runs=runs)
        inference = inference_speed(args.root, Path(scratch) / f"{args.presets[0]}-0") if on_cpu else None
        print("timing the speed choices of this CPU class ...", flush=True)
        choices = speed_choices(args.root, Path(scratch), args.presets, args.train_args) if on_cpu else {}

    print("\n" + format_row(None))
    for row in runs:
        print(format_row(row))
    print(f"\nmean ± std over {args.seeds} seed(s):")
    for name in args.presets:
        rows = [row for row in runs if row["preset"] == name]
        summaries[name] = {
            key: mean_std([row[key] for row in rows])
            for key in ("wall_seconds", "train_seconds", "val_iou", "iou", "tp", "fp", "fn")
        }
        print(f"  {name:<6} " + "   ".join(plus_minus(label, summaries[name][key]) for label, key in SUMMARY_COLUMNS))
        parts = rows[0]["breakdown_seconds"]
        summaries[name]["breakdown_seconds"] = {
            part: mean_std([row["breakdown_seconds"][part] for row in rows]) for part in parts
        }
        print(
            "         whole process: "
            + ", ".join(f"{part} {summaries[name]['breakdown_seconds'][part]['mean']:.1f} s" for part in parts)
        )
    print("\nwhere the test errors are (mean over seeds; pixels, the network's argmax before any vote):")
    error_keys = ("fg_bg", "fg_bg_near_threshold", "wrong_digit", "misread_images", "split_regions", "voted_iou")
    print(f"  {'preset':<6} " + " ".join(f"{key:>21}" for key in error_keys))
    for name in args.presets:
        rows = [row["errors"] for row in runs if row["preset"] == name]
        summaries[name]["errors"] = {key: mean_std([row[key] for row in rows]) for key in error_keys + ("iou",)}
        print(f"  {name:<6} " + " ".join(f"{summaries[name]['errors'][key]['mean']:>21,.4g}" for key in error_keys))
    for name, per_seed in ablations.items():
        print(
            f"  {name} on validation (last epoch): "
            + ", ".join(f"{kind} {mean_std([seed[kind] for seed in per_seed])['mean']:.4f}" for kind in per_seed[0])
        )
        # Paired within each seed: the gain over the plain weights, and how much it varies by seed.
        for kind in list(per_seed[0])[1:]:
            gain = mean_std([seed[kind] - seed["raw"] for seed in per_seed])
            print(f"    {kind} - raw: {gain['mean']:+.4f} ± {gain['std']:.4f}")

    breakdown = None
    if reference and "fast" in summaries:
        per_item, batched = reference["dataset"]["total_seconds"], reference["batched"]["total_seconds"]
        fast_wall = summaries["fast"]["wall_seconds"]["mean"]
        flops = {name: recipe_flops(get_preset(name, device)) for name in ("reference", *args.presets)}
        breakdown = {
            "implementation": per_item / batched,  # same recipe, per-item path vs batched path
            "recipe": batched / fast_wall,  # the reference recipe batched vs the whole fast process
            "total": per_item / fast_wall,
            "flops": flops,
            "flops_ratio_reference_to_fast": flops["reference"] / flops["fast"],
        }
        print(
            f"\nspeed-up of fast over the reference recipe: {breakdown['total']:.0f}x = implementation "
            f"{breakdown['implementation']:.2f}x (per-item -> batched, same recipe) x "
            f"recipe {breakdown['recipe']:.0f}x "
            f"(reference recipe batched -> fast); arithmetic {flops['reference'] / 1e12:.0f} TFLOP vs "
            f"{flops['fast'] / 1e12:.1f} TFLOP ({breakdown['flops_ratio_reference_to_fast']:.0f}x)"
        )

    data_paths = {name: data_path_overhead(args.root, name, batches=40) for name in args.presets} if on_cpu else {}
    for name, path in data_paths.items():
        print(
            f"data path ({name}): trainer {path['trainer_images_per_s']:.0f} images/s vs bare loop "
            f"{path['bare_images_per_s']:.0f} images/s: overhead {path['overhead']:.1%}"
        )
    slowdowns = {}
    if inference:
        speeds = inference["images_per_s"]
        listed = ", ".join(f"{kind} {value:.0f}" for kind, value in speeds.items())
        print(f"inference ({args.presets[0]}, test set), images/s: {listed}; auto runs {inference['auto']}")
        by_size = ", ".join(f"{size} {value:.0f}" for size, value in inference["images_per_s_by_batch_size"].items())
        print(f"inference ({inference['auto']}), images/s by images per batch: {by_size}; "
              f"evaluate uses {inference['batch_size']}")  # fmt: skip
        # Seconds per image: the default is auto's precision in the recipe's layout (channels_last).
        per_image = {kind: 1 / speeds[kind] for kind in ("fp32", "bf16")}
        per_image["default"] = 1 / speeds[inference["auto"]]
        slowdowns["evaluate"] = default_slowdown(per_image)
    for name, timed in choices.items():
        how = " ".join(SPEED_CHOICE_RUNS.get(name, [])) or "as it is"
        seconds = ", ".join(f"{label} ({row['precision']}) {row['train_seconds']:.1f}" for label, row in timed.items())
        print(f"speed choices ({name}, {how}), seconds of training: {seconds}")
        slowdowns[f"train {name}"] = default_slowdown({label: row["train_seconds"] for label, row in timed.items()})
    for what, slowdown in slowdowns.items():
        print(f"  default precision, {what}: {slowdown:+.1%} against the faster of fp32 and bf16")

    checks = {}
    fast_rows = [row for row in runs if row["preset"] == "fast"]
    if fast_rows:
        checks["fast: test IoU >= 0.9594 on every seed"] = all(row["iou"] >= TARGET_IOU for row in fast_rows)
        checks["fast: the network alone (argmax, no vote) >= 0.9594 on every seed"] = all(
            row["errors"]["iou"] >= TARGET_IOU for row in fast_rows
        )
        if breakdown:
            checks[f"fast: >= {TARGETS['fast_speedup']:.0f}x less wall time"] = (
                breakdown["total"] >= TARGETS["fast_speedup"]
            )
    if "best" in summaries:
        best_iou = summaries["best"]["iou"]["mean"]
        checks[f"best: mean test IoU >= {TARGETS['best_iou']}"] = best_iou >= TARGETS["best_iou"]
        best_rows = [row for row in runs if row["preset"] == "best"]
        checks["best: <= 600 s of training, every seed"] = all(
            row["train_seconds"] <= TARGETS["best_train_seconds"] for row in best_rows
        )
        if reference:
            budget = TARGETS["best_cost_fraction"] * reference["dataset"]["total_seconds"]
            checks[f"best: training <= 1/25 of the reference's 20 epochs ({budget:.0f} s), every seed"] = all(
                row["train_seconds"] <= budget for row in best_rows
            )
    if data_paths:
        checks["data path overhead <= 10%"] = all(
            path["overhead"] <= TARGETS["overhead"] for path in data_paths.values()
        )
    if slowdowns:
        checks["default precision <= 10% slower than the faster of fp32 and bf16 (train, evaluate)"] = all(
            slowdown <= TARGETS["default_precision_slowdown"] for slowdown in slowdowns.values()
        )
    if on_cpu:
        checks["peak RSS of mnistseg train <= 3 GiB"] = all(row["peak_rss_gib"] <= TARGETS["rss_gib"] for row in runs)
    print("\ntargets:")
    for name, met in checks.items():
        print(f"  [{'met' if met else 'NOT MET'}] {name}")
    print()
    write_record(
        args.json,
        seeds=args.seeds,
        device=str(device),
        reference=reference,
        runs=runs,
        summaries=summaries,
        validation_ablations=ablations,
        speedup=breakdown,
        data_path=data_paths,
        inference=inference,
        speed_choices=choices,
        speed_choices_network="the default run's",  # what each choice trains (own_network_flags)
        default_precision_slowdown=slowdowns,
        targets=checks,
    )


if __name__ == "__main__":
    main()
