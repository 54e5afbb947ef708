"""Multi-digit scenes: the overlap rule by hand, determinism, no leakage, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistseg.data import load_arrays, split_indices
from mnistseg.recipes import get_preset
from mnistseg.scenes import TEST_SCENE_SEED, TEST_SCENES, make_scenes
from mnistseg.train import make_batches


def test_overlapping_digits_follow_the_brighter_pixel() -> None:
    # Two flat "digits": A is 100 everywhere (a 3), B is 200 everywhere (a 5). On a 28x28
    # canvas both land at (0, 0). Wherever the scene is 200, B was drawn and is brighter,
    # so the class is 5 + 1 = 6; where it is 100, only A was drawn: 3 + 1 = 4.
    images = torch.stack([torch.full((28, 28), 100, dtype=torch.uint8), torch.full((28, 28), 200, dtype=torch.uint8)])
    labels = torch.tensor([3, 5])
    scenes, masks = make_scenes(images, labels, 40, seed=0, size=28, digits_per_scene=(2, 2), max_overlap=1.0)
    assert set(scenes.unique().tolist()) == {100, 200}
    assert torch.equal(masks[scenes == 200], torch.full_like(masks[scenes == 200], 6))
    assert torch.equal(masks[scenes == 100], torch.full_like(masks[scenes == 100], 4))


def test_masks_follow_the_threshold_rule(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=False)
    scenes, masks = make_scenes(images[:500], labels[:500], 50, seed=1)
    assert scenes.shape == (50, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(masks > 0, scenes.float() / 255 > 0.2)
    digits_per_scene = [len(set(m.unique().tolist()) - {0}) for m in masks]
    assert 1 <= min(digits_per_scene) and max(digits_per_scene) <= 5


def test_scenes_are_deterministic_and_use_only_the_digits_given(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=True)
    sevens = labels == 7
    first = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=5)
    again = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=5)
    other = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert set(first[1].unique().tolist()) == {0, 8}  # only sevens were given


def test_training_scenes_draw_only_training_split_digits(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The split written into the labels: every training-split digit a 1, every validation digit
    # a 2. A training canvas may then hold only class 2 (1 + 1) and background, a validation
    # canvas only class 3: one digit from the other split would show as the other class.
    recipe = get_preset("fast", dataset="scenes", subset=600)
    images, _ = load_arrays(data_root, train=True)
    train_index, val_index = split_indices(600, recipe.seed)
    marked = torch.zeros(len(images), dtype=torch.int64)
    marked[train_index], marked[val_index] = 1, 2
    monkeypatch.setattr("mnistseg.train.load_arrays", lambda root, train, dataset: (images, marked))
    train, val, _, _ = make_batches(recipe, data_root, torch.device("cpu"))
    for batches, expected in ((train, {0, 2}), (val, {0, 3})):
        classes = set().union(*(set(masks.unique().tolist()) for _, masks in batches))
        assert classes == expected


def test_train_and_evaluate_scenes_from_the_cli(data_root: Path, tmp_path: Path) -> None:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mnistseg", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    trained = run("train", "--dataset", "scenes", "--no-augment", "--subset", "600", "--epochs", "1",
                  "--base-width", "4", "--root", data_root, "--out", tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "config.json").read_text())["recipe"]["dataset"] == "scenes"
    evaluated = run("evaluate", "--checkpoint", tmp_path, "--root", data_root)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "test_metrics.json").read_text())
    assert summary["images"] == TEST_SCENES
    images, labels = load_arrays(data_root, train=False)
    _, masks = make_scenes(images, labels, TEST_SCENES, TEST_SCENE_SEED)
    assert summary["tp"] + summary["fn"] == int((masks > 0).sum())  # every test-scene digit pixel, once
    refused = run("train", "--preset", "best", "--dataset", "scenes", "--root", data_root, "--out", tmp_path / "x")
    assert refused.returncode == 1 and "--no-augment" in refused.stderr


@pytest.mark.parametrize("size", [30, 20])
def test_bad_canvas_sizes_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        make_scenes(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), 1, 0, size=size)
