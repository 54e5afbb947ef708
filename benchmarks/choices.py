"""The `fast` preset's choices, decided on the validation split: variants of it, over seeds.

Each variant is a real ``mnistseg train --preset fast`` process with some flags changed,
trained once per seed. Its figures: the whole process's wall time, and the validation IoU
of the saved checkpoint (the held-out sixth of the run's images: 24,000 for the preset), plain
as the trainer reports it (the network alone: its argmax, no vote) and with the region vote
(the preset's post-processing). The test set is
never read here. The choices of ``best`` (moving average, test-time shifts) are measured on
validation by ``time_to_quality.py`` from each ``best`` run's own weights.

Two sets of variants, one per CPU class, each run on its own class: ``--cpu-class native``
(bf16 native: the preset as written) and ``--cpu-class float32`` (no native bf16: the preset
with :data:`mnistseg.recipes.FP32_CPU_CHANGES`, whose flags below change that one). Prints a
table and writes ``--json`` (default ``benchmarks/results/choices.json``, or
``choices_float32.json``). About 15-20 s per run on 2 idle CPU cores. Usage::

    .venv/bin/python benchmarks/choices.py --root data --seeds 3
    .venv/bin/python benchmarks/choices.py --root data --seeds 3 --cpu-class float32   # on an AVX2 CPU
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from mnistseg.checkpoint import load_model
from mnistseg.data import class_names
from mnistseg.device import resolve_precision
from mnistseg.evaluate import evaluate
from mnistseg.metrics import summarize
from mnistseg.postprocess import InferencePolicy
from mnistseg.train import make_batches
from record import benchmark_parser, mean_std, write_record

# (name, flags for mnistseg train --preset fast); the first is the preset as it stands.
PREVIOUS_FAST = ["--bottleneck-blocks", "2", "--half-scores", "--head-lr-scale", "1", "--subset", "21600"]
FP32_CLASS_WIDTHS = ["--widths", "8,32,64", "--lr", "0.024"]
VARIANTS = (
    ("fast (as it stands)", []),
    ("the previous fast: 2 bottleneck blocks, class scores from both coarse levels, head at 1x, "
     "18,000 images", PREVIOUS_FAST),
    ("18,000 images (subset 21,600)", ["--subset", "21600"]),
    ("22,000 images (subset 26,400)", ["--subset", "26400"]),
    ("4 bottleneck blocks", ["--bottleneck-blocks", "4"]),
    ("class scores from the half-size level too", ["--half-scores"]),
    ("head at the base rate (1x)", ["--head-lr-scale", "1"]),
    ("batch 64 (half the steps)", ["--batch-size", "64"]),
    ("the U-Net's concat decoder (all levels; head at 1x)",
     ["--decoder", "concat", "--half-scores", "--head-lr-scale", "1"]),
    ("widths 8/32/64 at lr 0.024 (the float32 class's)", FP32_CLASS_WIDTHS),
)  # fmt: skip
# Where the CPU trains in float32, fast is the native class's network at 8/32/64, lr 0.024
# (FP32_CPU_CHANGES): against it, the float32 class's previous fast (two blocks, both coarse levels'
# scores, the head at 1x, 18,000 images), fewer images, and the native class's widths and rate.
FLOAT32_VARIANTS = (
    ("fast in float32 (as it stands: the native class's network at 8/32/64, lr 0.024)", []),
    ("the previous float32 fast: 2 bottleneck blocks, class scores from both coarse levels, head at 1x, "
     "18,000 images", PREVIOUS_FAST),
    ("18,000 images (subset 21,600)", ["--subset", "21600"]),
    ("the native class's fast as written (16/32/64, lr 0.03)", ["--widths", "16,32,64", "--lr", "0.03"]),
)  # fmt: skip
CPU_CLASSES = {"native": (VARIANTS, "bf16"), "float32": (FLOAT32_VARIANTS, "fp32")}


def voted_validation_iou(out: Path, root: Path) -> float:
    """The saved checkpoint's validation IoU with the region vote, on the run's own split."""
    model, record = load_model(out)
    recipe = record.recipe
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    _, val_batches, _, _ = make_batches(recipe, root, torch.device("cpu"))
    names = class_names(recipe.dataset)
    result = evaluate(model, val_batches, len(names), torch.device("cpu"), record.precision or "fp32",
                      recipe.channels_last, InferencePolicy(vote="region"))  # fmt: skip
    return summarize(result.confusion, names)["iou"]


def main() -> None:
    parser = benchmark_parser(__doc__, "choices.json")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per variant (default: 3)")
    parser.add_argument("--cpu-class", choices=tuple(CPU_CLASSES), default="native",
                        help="the variants of this CPU class's fast; run on such a CPU (default: native)")  # fmt: skip
    args = parser.parse_args()
    variants, precision = CPU_CLASSES[args.cpu_class]
    found = resolve_precision("auto", torch.device("cpu"))
    if found != precision:
        parser.error(f"--cpu-class {args.cpu_class} trains in {precision}, but this CPU trains in {found}")
    if args.cpu_class == "float32" and args.json == parser.get_default("json"):
        args.json = args.json.with_name("choices_float32.json")
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for name, flags in variants:
            runs = []
            for seed in range(args.seeds):
                out = Path(scratch) / f"{len(results)}-{seed}"
                command = [sys.executable, "-m", "mnistseg", "train", "--preset", "fast", "--seed", str(seed)]
                command += ["--root", str(args.root), "--out", str(out), "--device", "cpu", *flags, *args.train_args]
                started = time.perf_counter()
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
                wall = time.perf_counter() - started
                val_iou = json.loads((out / "config.json").read_text())["best"]["val"]["iou"]
                voted = voted_validation_iou(out, args.root)
                runs.append({"seed": seed, "val_iou": val_iou, "val_iou_voted": voted, "wall_seconds": wall})
                print(f"{name:<48} seed {seed}: validation IoU {val_iou:.4f}, voted {voted:.4f}, {wall:.1f} s",
                      flush=True)  # fmt: skip
            results.append({
                "variant": name, "flags": flags, "runs": runs,
                **{key: mean_std([run[key] for run in runs]) for key in ("val_iou", "val_iou_voted", "wall_seconds")},
            })  # fmt: skip
    print(f"\n{'variant':<48} {'val IoU':>15} {'voted val IoU':>15} {'wall s':>11}   (mean ± std, {args.seeds} seeds)")
    for result in results:
        cells = [f"{result[key]['mean']:.4f} ± {result[key]['std']:.4f}" for key in ("val_iou", "val_iou_voted")]
        wall = result["wall_seconds"]
        print(f"{result['variant']:<48} {cells[0]:>15} {cells[1]:>15} {wall['mean']:>5.1f} ± {wall['std']:.1f}")
    write_record(args.json, seeds=args.seeds, cpu_class=args.cpu_class, variants=results)


if __name__ == "__main__":
    main()
