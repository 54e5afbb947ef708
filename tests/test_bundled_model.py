"""The model shipped inside the package: its checksum, its card, and predict with nothing trained."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mnistseg.checkpoint import BUNDLED_MODEL, WEIGHTS_FILE, read_record
from mnistseg.evaluate import evaluate_checkpoint
from mnistseg.model_card import CARD_FILE
from mnistseg.prepare import sha256_of

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def card_header(path: Path) -> dict:
    """The YAML header of a model card (between the first two ``---`` lines), parsed."""
    text = path.read_text()
    assert text.startswith("---\n"), text[:80]
    return yaml.safe_load(text.split("---\n")[1])


def test_the_shipped_weights_match_their_card() -> None:
    weights = BUNDLED_MODEL / WEIGHTS_FILE
    assert weights.stat().st_size < 2_500_000  # best's network: under half a million float32 weights
    card = (BUNDLED_MODEL / CARD_FILE).read_text()
    stated = re.findall(r"`model\.safetensors`, SHA-256 `([0-9a-f]{64})`", card)
    assert stated == [sha256_of(weights)]
    header = card_header(BUNDLED_MODEL / CARD_FILE)
    assert header["pipeline_tag"] == "image-segmentation" and header["license"] == "mit"
    metrics = {item["name"]: item["value"] for item in header["model-index"][0]["results"][0]["metrics"]}
    test_iou = next(value for name, value in metrics.items() if name.startswith("test IoU"))
    assert f"IoU {test_iou:.4f}." in card  # the header's figure is the test rows' line below it
    single = re.search(r"\* Single MNIST test digits \(10,000 images, fp32, parts vote\): .*: IoU (0\.\d{4})\.", card)
    assert single and float(single.group(1)) >= 0.9594  # the article's test IoU, on the same single digits
    record = read_record(BUNDLED_MODEL)
    assert (record.recipe.name, record.recipe.dataset, record.recipe.seed, record.data_root) == (
        "best",
        "rows",
        0,
        None,
    )
    assert "mnistseg train --preset best --dataset rows --seed 0" in card


def test_predict_with_nothing_trained_uses_the_bundled_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mnistseg", "predict", str(EXAMPLES / "page.png"), str(EXAMPLES / "photo.jpg")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # an empty folder: no runs/
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model: the bundled model (nothing trained under runs/")
    assert lines[1:] == [f"{EXAMPLES / 'page.png'}: 6 6 1 7 3 8 0", f"{EXAMPLES / 'photo.jpg'}: 9"]
    summary = json.loads((tmp_path / "predictions" / "page.json").read_text())
    assert summary["digits"] == [6, 6, 1, 7, 3, 8, 0]


def test_the_shipped_weights_score_the_test_set_as_their_card_says(data_root: Path, tmp_path: Path) -> None:
    # The counts the card recorded when the model was built (in the precision of that machine),
    # against the shipped weights scored here on the 2,000 test rows in float32, which every CPU
    # runs alike.
    card = (BUNDLED_MODEL / CARD_FILE).read_text()
    recorded = re.search(
        r"\* Test \(2,000 images, (?:fp32|bf16), test-time shifts, parts vote\): TP ([\d,]+), FP ([\d,]+), FN ([\d,]+)",
        card,
    )
    assert recorded, "the card has no test line"
    tp, fp, fn = (int(group.replace(",", "")) for group in recorded.groups())
    folder = tmp_path / "bundled"  # a copy: evaluate rewrites the card of the folder it scores
    shutil.copytree(BUNDLED_MODEL, folder)
    summary = evaluate_checkpoint(folder, data_root, torch.device("cpu"), precision="fp32")
    # bf16 and float32 move a few hundred pixels either way (FP and FN by ~2%); a damaged or
    # different model moves thousands. (Built in float32, the counts are the card's exactly.)
    assert summary["tp"] + summary["fn"] == tp + fn  # the same test pixels: the data and the mask rule
    assert summary["tp"] == pytest.approx(tp, rel=2e-3)
    assert summary["fp"] == pytest.approx(fp, rel=0.05) and summary["fn"] == pytest.approx(fn, rel=0.05)
