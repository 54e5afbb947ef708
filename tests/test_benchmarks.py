"""The benchmarks' own arithmetic, on values worked out by hand: what the results pages rest on."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mnistseg.recipes import get_preset

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
from record import mean_std  # noqa: E402
from time_to_quality import default_slowdown, extrapolated_seconds, own_network_flags, split_sizes  # noqa: E402


def test_mean_std_is_the_sample_standard_deviation() -> None:
    # (1, 2, 3): mean 2; squared deviations 1 + 0 + 1 over n - 1 = 2 gives 1.
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0}  # one seed: no spread to report


def test_each_speed_choice_trains_the_default_runs_network() -> None:
    import torch

    from mnistseg.cli import get_args_parser

    cpu = torch.device("cpu")
    for name in ("fast", "best"):
        default = get_preset(name, cpu)
        for precision in ("fp32", "bf16"):
            args = get_args_parser().parse_args(["train", "--preset", name, *own_network_flags(name),
                                                 "--precision", precision])  # fmt: skip
            overrides = {
                field: getattr(args, field) for field in args.recipe_fields if getattr(args, field) is not None
            }
            timed = get_preset(name, cpu, **overrides)  # as `mnistseg train` builds it
            assert replace(timed, precision=default.precision) == default  # only the precision differs


def test_the_float32_variants_change_the_float32_classs_fast() -> None:
    import torch

    from choices import FLOAT32_VARIANTS
    from mnistseg.cli import get_args_parser

    def trained(flags: list[str]) -> object:  # as `mnistseg train --preset fast` builds it on that class
        args = get_args_parser().parse_args(["train", "--preset", "fast", *flags, "--precision", "fp32"])
        overrides = {field: getattr(args, field) for field in args.recipe_fields if getattr(args, field) is not None}
        return get_preset("fast", torch.device("cpu"), **overrides)

    recipes = [trained(flags) for _, flags in FLOAT32_VARIANTS]
    assert recipes[0] == get_preset("fast", torch.device("cpu"), precision="fp32")  # the class's fast as it stands
    assert (recipes[0].widths, recipes[0].lr, recipes[0].bottleneck_blocks, recipes[0].half_scores,
            recipes[0].head_lr_scale, recipes[0].subset) == ((8, 32, 64), 0.024, 3, False, 300.0, 24_000)  # fmt: skip
    previous = recipes[1]  # the float32 class's fast before its network alone cleared the article
    assert previous == replace(recipes[0], bottleneck_blocks=2, half_scores=True, head_lr_scale=1.0, subset=21_600)
    assert recipes[2] == replace(recipes[0], subset=21_600)
    assert recipes[3] == replace(recipes[0], widths=(16, 32, 64), lr=0.03)


def test_choices_refuses_the_other_cpu_classs_variants(tmp_path: Path) -> None:
    import torch

    from mnistseg.device import resolve_precision

    other = "native" if resolve_precision("auto", torch.device("cpu")) == "fp32" else "float32"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "choices.py"), "--cpu-class", other, "--json", str(tmp_path / "c.json")],
        capture_output=True, text=True, timeout=120, cwd=BENCHMARKS,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"--cpu-class {other} trains in" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "c.json").exists()


def test_split_sizes_are_the_five_to_one_split() -> None:
    assert split_sizes(get_preset("fast")) == (20_000, 4_000)  # its subset of 24,000
    assert split_sizes(get_preset("best")) == (50_000, 10_000)  # all 60,000 training images


def test_the_reference_extrapolation() -> None:
    # 50,000 images at 50/s = 1,000 s, 10,000 at 200/s = 50 s: 1,050 s an epoch, x 20 epochs.
    assert extrapolated_seconds(train_images_per_s=50.0, val_images_per_s=200.0, epochs=20) == (1_050.0, 21_000.0)


def test_the_default_precision_against_the_faster() -> None:
    assert default_slowdown({"default": 11.0, "fp32": 10.0, "bf16": 20.0}) == pytest.approx(0.10)
    assert default_slowdown({"default": 9.0, "fp32": 10.0, "bf16": 12.0}) == pytest.approx(-0.10)


LOG = """NVIDIA H200, 143771 MiB, 580.159.04
torch 2.11.0+cu130 cuda 13.0
-m mnistseg train --preset reference --epochs 2
training reference: SimpleUNet width 64 (1,883,851 parameters), 50,000 train / 10,000 val images, 2 epochs
epoch  1/2  train_loss 0.2222  val_loss 0.0436  TP 1,000  FP 100  FN 400  IoU 0.6667  Dice 0.8000  13.1s
epoch  2/2  train_loss 0.0628  val_loss 0.0296  TP 1,200  FP 50  FN 250  IoU 0.8000  Dice 0.8889  11.5s
best validation IoU 0.8000 at epoch 2; checkpoint in /tmp/x
test set (10,000 images, fp32): TP 900  FP 60  FN 40  IoU 0.9000  Dice 0.9474
"""


def test_the_gpu_log_parser_reads_back_every_line(tmp_path: Path) -> None:
    log, out = tmp_path / "log.txt", tmp_path / "out.json"
    log.write_text(LOG)
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "reference_from_log.py"), str(log), "--json", str(out)],
        capture_output=True, text=True, timeout=120, cwd=BENCHMARKS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert [entry["epoch"] for entry in record["epochs"]] == [1, 2]
    assert record["train_seconds"] == pytest.approx(13.1 + 11.5)
    # Epoch 1: 1,000 / (1,000 + 100 + 400) = 2/3; the test line: 900 / (900 + 60 + 40) = 0.9.
    assert record["epochs"][0]["mnistseg"] == {"tp": 1000, "fp": 100, "fn": 400, "iou": pytest.approx(2 / 3)}
    assert record["test"] == {"tp": 900, "fp": 60, "fn": 40, "iou": pytest.approx(0.9)}
    assert record["best_epoch"] == 2 and record["hardware"]["gpu"].startswith("NVIDIA H200")
    assert record["epochs"][0]["article"]["tp"] == 1_156_958  # the article's epoch 1 (quoted)


def test_chained_digits_touch_then_overlap_by_the_pixels_asked() -> None:
    from touching_digits import chain

    bar = np.zeros((5, 4), dtype=np.float32)
    bar[:, 1:3] = 1.0  # a vertical bar two pixels wide, one empty column either side
    touching = chain([bar, bar], overlap=0)
    columns = np.flatnonzero((touching > 0.2).any(axis=0))
    # Ink at columns 1-2, then the second bar's ink right beside it: 1-4, one connected patch.
    assert columns.tolist() == [1, 2, 3, 4]
    overlapping = chain([bar, bar], overlap=1)
    assert np.flatnonzero((overlapping > 0.2).any(axis=0)).tolist() == [1, 2, 3]  # one column shared
