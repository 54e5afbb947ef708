"""The real command line, end to end on a subset, as separate processes."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from mnistseg.data import load_arrays
from mnistseg.recipes import get_preset

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
AVX2_CLASS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}  # run as an AVX2-only CPU


def mnistseg(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mnistseg ARGS`` (with ``env`` added to this environment) and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "mnistseg", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def assert_valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()


@pytest.fixture(scope="module")
def trained(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the default preset trained for 2 epochs on 600 images (500 train / 100 val)."""
    out = tmp_path_factory.mktemp("run")
    result = mnistseg("train", "--root", data_root, "--out", out, "--subset", 600, "--epochs", 2, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "epoch  2/2" in result.stdout
    # Output to a pipe, not a terminal: plain progress lines during each epoch, every ~10%.
    progress = re.findall(r"epoch 1/2 +([\d,]+)/500 images +[\d,]+ img/s +loss \d\.\d{4} +\d+ s left", result.stdout)
    assert len(progress) >= 8 and int(progress[0]) < int(progress[-1]) < 500, result.stdout
    return out


def test_train_writes_checkpoint_metrics_and_figures(trained: Path) -> None:
    rows = list(csv.DictReader((trained / "metrics.csv").open()))
    assert [row["epoch"] for row in rows] == ["1", "2"]
    for row in rows:
        tp, fp, fn = int(row["tp"]), int(row["fp"]), int(row["fn"])
        assert float(row["iou"]) == pytest.approx(tp / (tp + fp + fn))
    config = json.loads((trained / "config.json").read_text())
    # 3 bottleneck blocks, scores from there alone, the region vote; 16/32/64 where bf16 is native,
    # 8/32/64 in float32.
    fast = get_preset("fast", torch.device("cpu"))
    assert config["model"] == {
        "in_channels": 1, "num_classes": 11, "widths": list(fast.widths), "input_to_head": True,
        "decoder": "scores", "input_mean": 0.0, "input_std": 1.0, "bottleneck_blocks": fast.bottleneck_blocks,
        "half_scores": fast.half_scores,
    }  # fmt: skip
    assert config["recipe"]["name"] == "fast" and config["recipe"]["subset"] == 600
    assert config["inference"] == {"tta": False, "vote": "region", "min_part_share": 0.25}
    # Each fact once: what rebuilds the network, what trained it and how it is used, apart.
    sections = [set(config[name]) for name in ("model", "recipe", "inference")]
    assert all(not a & b for a in sections for b in sections if a is not b)
    assert set(config) & set().union(*sections) == {"precision"}  # two facts: what was asked, and what ran
    # The best checkpoint is the epoch with the highest validation IoU (the first, on a tie).
    best_row = max(rows, key=lambda row: (float(row["iou"]), -int(row["epoch"])))
    assert config["last"]["epoch"] == 2 and config["best"]["epoch"] == int(best_row["epoch"])
    assert config["best"]["val"]["iou"] == pytest.approx(float(best_row["iou"]))
    assert {"torch", "torchvision", "mnistseg", "python"} <= set(config["versions"])
    assert (trained / "model.safetensors").stat().st_size > 100_000
    assert (trained / "last.safetensors").is_file()
    for name in ("learning_curve.png", "figures/val_epoch_001.png", "figures/val_epoch_002.png"):
        assert_valid_png(trained / name)
    # A model card in the hub's layout: a YAML header, then the recipe and the validation counts.
    card = (trained / "MODEL_CARD.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["pipeline_tag"] == "image-segmentation" and header["datasets"] == ["mnist"]
    validation = header["model-index"][0]["results"][0]["metrics"][0]
    assert validation["name"] == "validation IoU (the network's argmax, no post-processing)"
    assert validation["value"] == round(config["best"]["val"]["iou"], 4)
    assert "| subset | 600 |" in card
    assert not list(trained.rglob("*.tmp")), "a temporary file was left behind"


def test_evaluate_counts_every_test_pixel(
    trained: Path, data_root: Path, tmp_path: Path, native_precision: str
) -> None:
    json_path = tmp_path / "summary.json"
    result = mnistseg("evaluate", "--checkpoint", trained, "--root", data_root, "--json", json_path, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads(json_path.read_text())
    assert {"tp", "fp", "fn", "iou", "dice", "per_class"} <= set(summary)
    # Every truly-foreground test pixel is either found (TP) or missed (FN): TP + FN is the
    # number of test pixels over the threshold, counted here straight from the raw file.
    images, _ = load_arrays(data_root, train=False)
    assert summary["tp"] + summary["fn"] == int((images.float() / 255 > 0.2).sum())
    assert summary["iou"] == pytest.approx(summary["tp"] / (summary["tp"] + summary["fp"] + summary["fn"]))
    assert sum(row["tp"] for row in summary["per_class"].values()) == summary["tp"]
    assert f"TP {summary['tp']:,}" in result.stdout
    assert_valid_png(trained / "test_overlay.png")
    # The full 11x11 confusion: every test pixel once; its off-background column and row sums are the counts.
    confusion = summary["confusion"]
    assert len(confusion) == 11 and all(len(row) == 11 for row in confusion)
    assert sum(map(sum, confusion)) == len(images) * 28 * 28
    assert sum(confusion[c][c] for c in range(1, 11)) == summary["tp"]
    assert sum(confusion[t][p] for t in range(11) for p in range(1, 11) if t != p) == summary["fp"]
    # The hardest images: the lowest IoUs, in order, each re-counted from the true mask.
    hardest = summary["hardest_images"]
    assert len(hardest) == 12 and [row["iou"] for row in hardest] == sorted(row["iou"] for row in hardest)
    assert hardest[-1]["iou"] <= summary["iou"]
    for name in ("confusion_matrix.png", "hardest_test_digits.png"):  # beside the overlay
        assert_valid_png(trained / name)
    card = (trained / "MODEL_CARD.md").read_text()  # the card now carries the test figures
    assert f"Test (10,000 images, {native_precision}, region vote): TP {summary['tp']:,}, FP {summary['fp']:,}" in card
    # Each figure in the header says what it includes: validation the network alone, test with the vote.
    names = [item["name"] for item in yaml.safe_load(card.split("---\n")[1])["model-index"][0]["results"][0]["metrics"]]
    assert names == ["validation IoU (the network's argmax, no post-processing)",
                     f"test IoU ({native_precision}, region vote)"]  # fmt: skip


def test_auto_precision_is_resolved_at_start_and_recorded(
    trained: Path, data_root: Path, tmp_path: Path, native_precision: str
) -> None:
    config = json.loads((trained / "config.json").read_text())
    assert config["recipe"]["precision"] == "auto" and config["precision"] == native_precision  # asked, and ran
    assert f"| precision it trained in | {native_precision} |" in (trained / "MODEL_CARD.md").read_text()
    # On an AVX2-only CPU the same preset trains in fp32, and says so on its first line.
    run = tmp_path / "avx2"
    result = mnistseg("train", "--root", data_root, "--out", run, "--subset", 600, "--device", "cpu", env=AVX2_CLASS)
    assert result.returncode == 0, result.stderr
    assert "batched loader, fp32 (auto) on cpu" in result.stdout.splitlines()[0]
    assert "widths 8/32/64" in result.stdout.splitlines()[0]  # fast's float32 widths (16/32/64 in bf16)
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "fp32" and config["model"]["widths"] == [8, 32, 64]
    # best keeps its minutes there: 8 epochs in fp32 (12 where bf16 is native), in its record too.
    best = tmp_path / "avx2-best"
    result = mnistseg("train", "--preset", "best", "--root", data_root, "--out", best, "--subset", 120,
                      "--device", "cpu", env=AVX2_CLASS)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "8 epochs" in result.stdout.splitlines()[0] and "fp32 (auto)" in result.stdout.splitlines()[0]
    assert json.loads((best / "config.json").read_text())["recipe"]["epochs"] == 8
    # A checkpoint is evaluated in what this CPU runs fastest, whatever it trained in; --precision
    # wins (shown with the precision auto does not pick here: bf16 emulated costs 2-3x float32).
    other = ("fp32", {}, "fp32") if native_precision == "bf16" else ("bf16", {}, "bf16")
    cases = [("auto", AVX2_CLASS, "fp32"), other] + ([("auto", {}, "bf16")] if native_precision == "bf16" else [])
    for precision, env, expected in cases:
        json_path = tmp_path / f"{precision}-{expected}.json"
        result = mnistseg(
            "evaluate", "--checkpoint", trained, "--root", data_root, "--json", json_path, "--figure",
            tmp_path / "t.png", "--device", "cpu", "--precision", precision, env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"evaluating {trained} (PyTorch, cpu, {expected}, region vote)"
        assert json.loads(json_path.read_text())["precision"] == expected


def test_figures_command(data_root: Path, tmp_path: Path) -> None:
    result = mnistseg("figures", "--root", data_root, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    for name in ("dataset_overlay.png", "augmentation.png"):
        assert_valid_png(tmp_path / name)
        with Image.open(tmp_path / name) as image:
            assert image.width > 400


def test_data_command_is_idempotent(data_root: Path) -> None:
    result = mnistseg("data", "--root", data_root)
    assert result.returncode == 0 and "SHA-256 verified" in result.stdout


@pytest.mark.parametrize(
    ("flags", "description", "parameters"),
    [
        # Two bottleneck blocks and both levels' scores (the reference's), whatever fast's are here.
        (("--decoder", "concat", "--no-normalize", "--bottleneck-blocks", "2"),
         "SimpleUNet widths 4/8/16, input at the head", 7_602),
        (("--decoder", "scores", "--normalize", "--bottleneck-blocks", "2", "--half-scores"),
         "widths 4/8/16, input at the head, score decoder, normalised input", 4_860),
        # One bottleneck block more (9*16*16 + 2*16 = 2,336), the half-size class scores gone (8*10 = 80).
        (("--decoder", "scores", "--bottleneck-blocks", "3", "--no-half-scores"),
         "score decoder, 3 bottleneck blocks, class scores from the bottleneck alone", 4_860 + 2_336 - 80),
    ],
)  # fmt: skip
def test_a_network_variant_trains_exports_and_predicts(
    data_root: Path, tmp_path: Path, flags: tuple[str, ...], description: str, parameters: int
) -> None:
    import torch

    from mnistseg.checkpoint import load_model, read_record
    from mnistseg.export import export_onnx

    out = tmp_path / "variant"
    result = mnistseg("train", "--root", data_root, "--out", out, "--subset", 120, "--widths", "4,8,16",
                      "--input-to-head", *flags, "--device", "cpu")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"{description} ({parameters:,} parameters)" in result.stdout
    model, record = load_model(out)
    assert (model.config.widths, model.config.input_to_head, model.config.decoder) == ((4, 8, 16), True, flags[1])
    assert record.recipe.widths == (4, 8, 16)
    assert "Test: not scored yet" in (out / "MODEL_CARD.md").read_text()
    pytest.importorskip("onnxruntime")
    from mnistseg.inference import OnnxModel

    images = torch.rand(3, 1, 28, 28)
    with torch.inference_mode():
        expected = model(images)
    assert (OnnxModel(export_onnx(out, tmp_path / "variant.onnx"))(images) - expected).abs().max() < 1e-3
    page = Image.new("L", (60, 40), 255)
    page.paste(0, (20, 8, 26, 32))  # a "1" as a black bar
    page.save(tmp_path / "one.png")
    predicted = mnistseg("predict", tmp_path / "one.png", "--checkpoint", out, "--out", tmp_path / "predictions")
    assert predicted.returncode == 0, predicted.stderr
    if flags[1] == "scores":
        return

    # config.json files of earlier versions still read. v0.2's repeated the network and the inference
    # flags in the recipe, base_width beside widths, and the data set, threshold and class names.
    config, record = json.loads((out / "config.json").read_text()), read_record(out)
    before_share = {**config, "inference": {"tta": True, "vote": "parts"}}  # before --min-part-share: a quarter
    (out / "config.json").write_text(json.dumps(before_share))
    assert read_record(out).recipe == replace(record.recipe, tta=True, vote="parts", min_part_share=0.25)
    network = {key: config["model"][key] for key in ("widths", "input_to_head", "decoder")}
    v02 = {**config, "model": {**config["model"], "base_width": 4}, "dataset": "mnist", "threshold": 0.2,
           "recipe": {**config["recipe"], **network, "normalize": False, "base_width": 4, **config.pop("inference")},
           "class_names": list(record.class_names)}  # fmt: skip
    (out / "config.json").write_text(json.dumps(v02))
    assert read_record(out).recipe == record.recipe and read_record(out).to_json() == record.to_json()
    # v0.1's had base_width alone, and none of the variants (widths, input at the head, decoder, normalisation).
    v01 = {**v02, "model": {"in_channels": 1, "num_classes": 11, "base_width": 4}}
    v01["recipe"] = {key: value for key, value in v02["recipe"].items() if key not in (*network, "normalize")}
    (out / "config.json").write_text(json.dumps(v01))
    old = read_record(out)
    assert old.model.widths == (4, 8, 16) and not old.model.input_to_head and old.model.decoder == "concat"
