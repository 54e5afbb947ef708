"""The model shipped inside the package: its checksum, its card, and predict with nothing trained."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from mnistseg.checkpoint import BUNDLED_MODEL, WEIGHTS_FILE, read_record
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
    assert weights.stat().st_size < 1_000_000
    card = (BUNDLED_MODEL / CARD_FILE).read_text()
    stated = re.findall(r"`model\.safetensors`, SHA-256 `([0-9a-f]{64})`", card)
    assert stated == [sha256_of(weights)]
    header = card_header(BUNDLED_MODEL / CARD_FILE)
    assert header["pipeline_tag"] == "image-segmentation" and header["license"] == "mit"
    metrics = {item["name"]: item["value"] for item in header["model-index"][0]["results"][0]["metrics"]}
    assert metrics["test IoU"] >= 0.9594  # the article's test IoU
    record = read_record(BUNDLED_MODEL)
    assert (record.recipe.name, record.recipe.seed, record.data_root) == ("fast", 0, None)
    assert "mnistseg train --preset fast --seed 0" in card


def test_predict_with_nothing_trained_uses_the_bundled_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mnistseg", "predict", str(EXAMPLES / "page.png"), str(EXAMPLES / "photo.jpg")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # an empty folder: no runs/
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("model: the bundled fast model (nothing trained under runs/")
    assert lines[1:] == [f"{EXAMPLES / 'page.png'}: 6 6 1 7 3 8 0", f"{EXAMPLES / 'photo.jpg'}: 9"]
    summary = json.loads((tmp_path / "predictions" / "page.json").read_text())
    assert summary["digits"] == [6, 6, 1, 7, 3, 8, 0]
