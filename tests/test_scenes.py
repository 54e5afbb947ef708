"""Multi-digit scenes and rows: the overlap rule and touching by hand, determinism, no leakage, and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from mnistseg.data import FreshCanvases, load_arrays, split_batches, split_indices
from mnistseg.recipes import get_preset
from mnistseg.resume import loader_generators
from mnistseg.scenes import TEST_SCENE_SEED, TEST_SCENES, make_rows, make_scenes, touching_offset
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


@pytest.mark.parametrize(("make", "most"), [(make_scenes, 5), (make_rows, 3)])
def test_masks_follow_the_threshold_rule(data_root: Path, make, most: int) -> None:
    images, labels = load_arrays(data_root, train=False)
    scenes, masks = make(images[:500], labels[:500], 50, seed=1)
    assert scenes.shape == (50, 64, 64) and masks.dtype == torch.int64
    assert torch.equal(masks > 0, scenes.float() / 255 > 0.2)
    digits_per_scene = [len(set(m.unique().tolist()) - {0}) for m in masks]
    assert 1 <= min(digits_per_scene) and max(digits_per_scene) <= most


def test_touching_offset_by_hand() -> None:
    # A bar in column 2 (rows 1-3) and a piece whose ink is its column 0 (rows 2-4): slid in from
    # the right, the piece first touches when its column 0 lands on column 3, beside the bar.
    left, right = np.zeros((5, 6), dtype=bool), np.zeros((5, 3), dtype=bool)
    left[1:4, 2], right[2:5, 0] = True, True
    assert touching_offset(left, right) == 3
    # Diagonal neighbours touch too (8-connected): ink at (0, 4) and the piece's (1, 0) -> column 5.
    left, right = np.zeros((2, 6), dtype=bool), np.zeros((2, 3), dtype=bool)
    left[0, 4], right[1, 0] = True, True
    assert touching_offset(left, right) == 5
    # Ink two rows apart never touches, wherever the piece goes.
    left, right = np.zeros((4, 6), dtype=bool), np.zeros((4, 3), dtype=bool)
    left[0, 4], right[3, 0] = True, True
    assert touching_offset(left, right) is None


@pytest.mark.parametrize("spacing", [0, -3, 2])
def test_rows_touch_then_move_by_the_spacing(spacing: int) -> None:
    # Two "digits", a 1 and a 2, each a bar of ink in columns 10-17 of its frame. The first sits
    # at column 0 (ink 10-17); the second touches it with its ink from column 18, then moves by
    # the spacing: ink from 18 + spacing. Where they overlap (spacing -3), the later one wins the
    # tie, so the first keeps columns 10-14. Rows 24-39 hold both bars whatever their jitter.
    image = torch.zeros(28, 28, dtype=torch.uint8)
    image[4:24, 10:18] = 200
    for seed in range(3):
        _, masks = make_rows(image.expand(2, 28, 28).clone(), torch.tensor([1, 2]), 1, seed,
                             digits_per_row=(2, 2), spacing=(spacing, spacing))  # fmt: skip
        columns = {c: set(masks[0, 24:40, c].unique().tolist()) - {0} for c in range(64)}
        inked = [c for c, classes in columns.items() if classes]
        assert inked == list(range(10, 18)) + list(range(max(18, 18 + spacing), 26 + spacing))
        first, second = columns[10], columns[25 + spacing]
        assert len(first) == len(second) == 1
        assert [c for c in inked if columns[c] == second] == list(range(18 + spacing, 26 + spacing))
        assert [c for c in inked if columns[c] == first] == list(range(10, min(18, 18 + spacing)))


def test_scenes_are_deterministic_and_use_only_the_digits_given(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=True)
    sevens = labels == 7
    first = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=5)
    again = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=5)
    other = make_scenes(images[sevens][:200], labels[sevens][:200], 30, seed=6)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert set(first[1].unique().tolist()) == {0, 8}  # only sevens were given


@pytest.mark.parametrize("augment", [False, True])
@pytest.mark.parametrize("dataset", ["scenes", "rows"])
def test_training_scenes_draw_only_training_split_digits(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, augment: bool
) -> None:
    # The split written into the labels: every training-split digit a 1, every validation digit
    # a 2. A training canvas may then hold only class 2 (1 + 1) and background, a validation
    # canvas only class 3: one digit from the other split would show as the other class.
    recipe = get_preset("fast", dataset=dataset, subset=600, augment=augment)
    images, _ = load_arrays(data_root, train=True)
    train_index, val_index = split_indices(600, recipe.seed)
    marked = torch.zeros(len(images), dtype=torch.int64)
    marked[train_index], marked[val_index] = 1, 2
    monkeypatch.setattr("mnistseg.train.load_arrays", lambda root, train, dataset: (images, marked))
    train, val, _, _ = make_batches(recipe, data_root, torch.device("cpu"))
    for batches, expected in ((train, {0, 2}), (val, {0, 3})):
        classes = set().union(*(set(masks.unique().tolist()) for _, masks in batches))
        assert classes == expected


@pytest.mark.parametrize(("dataset", "make"), [("scenes", make_scenes), ("rows", make_rows)])
def test_train_and_evaluate_scenes_from_the_cli(data_root: Path, tmp_path: Path, dataset: str, make) -> None:
    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mnistseg", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, timeout=600)

    trained = run("train", "--dataset", dataset, "--subset", "600", "--epochs", "1",
                  "--base-width", "4", "--root", data_root, "--out", tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["recipe"]["dataset"], config["inference"]["vote"]) == (dataset, "parts")
    evaluated = run("evaluate", "--checkpoint", tmp_path, "--root", data_root)
    assert evaluated.returncode == 0, evaluated.stderr
    summary = json.loads((tmp_path / "test_metrics.json").read_text())
    assert (summary["images"], summary["vote"]) == (TEST_SCENES, "parts")
    images, labels = load_arrays(data_root, train=False)
    _, masks = make(images, labels, TEST_SCENES, TEST_SCENE_SEED)
    assert summary["tp"] + summary["fn"] == int((masks > 0).sum())  # every test-canvas digit pixel, once
    refused = run("train", "--dataset", dataset, "--vote", "region", "--root", data_root, "--out", tmp_path / "x")
    assert refused.returncode == 1 and "--vote parts" in refused.stderr
    refused = run("train", "--preset", "best", "--dataset", dataset, "--mask-mode", "warp", "--root", data_root,
                  "--out", tmp_path / "y")  # fmt: skip
    assert refused.returncode == 1 and "--mask-mode derive" in refused.stderr


def test_augmented_rows_are_new_every_epoch_and_resume_where_they_left(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=True)

    def loader() -> FreshCanvases:
        batches = split_batches("rows", images[:300], labels[:300], "train", 25, seed=3, augment=True)
        assert isinstance(batches, FreshCanvases) and len(batches) == 4  # 100 canvases, a third of 300 digits
        return batches

    def epoch(batches: FreshCanvases) -> Tensor:  # every image and mask of one pass, one row each
        return torch.cat([torch.cat([x.flatten(1), m.flatten(1)], 1) for x, m in batches])

    first = loader()
    epochs = [epoch(first) for _ in range(3)]
    x, m = next(iter(first))
    assert torch.equal(x, (x * 255).round() / 255)  # warped digits back on 8-bit levels
    assert torch.equal(m > 0, x[:, 0] > 0.2)  # the mask is the threshold rule on the warped canvas
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    again = loader()
    assert torch.equal(epoch(again), epochs[0])
    resumed = loader()  # given the generators' states after one epoch, as a resumed run is
    for target, source in zip(loader_generators(resumed), loader_generators(again), strict=True):
        target.set_state(source.get_state())
    assert torch.equal(epoch(resumed), epochs[1])


@pytest.mark.parametrize("size", [30, 20])
def test_bad_canvas_sizes_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        make_scenes(torch.zeros(1, 28, 28, dtype=torch.uint8), torch.zeros(1, dtype=torch.int64), 1, 0, size=size)
