"""Stage 4: recipes, presets and the training loop, in-process on tiny subsets."""

from __future__ import annotations

import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mnistseg.checkpoint import load_weights
from mnistseg.data import load_arrays, masks_from_images, split_indices
from mnistseg.device import resolve_device
from mnistseg.distributed import DistributedContext
from mnistseg.recipes import Recipe, get_preset
from mnistseg.resume import STATE_FILE, load_training_state
from mnistseg.train import build_run, fit, train_one_epoch

CPU = resolve_device("cpu")


def quiet(line: str) -> None:
    """Swallow the progress lines."""


def test_presets_and_overrides() -> None:
    reference = get_preset("reference")
    assert (reference.widths, reference.batch_size, reference.lr, reference.epochs) == ((64, 128, 256), 100, 1e-3, 20)
    assert (reference.loader, reference.num_workers, reference.precision, reference.schedule) == (
        "dataset", 4, "fp32", "constant",
    )  # fmt: skip
    assert reference.augment and reference.ema_decay == 0 and not reference.tta
    assert get_preset("fast", epochs=7).epochs == 7
    # best keeps its minutes where a CPU trains it in fp32 (no native bf16): fewer epochs there.
    cpu = torch.device("cpu")
    assert get_preset("best", cpu, precision="bf16").epochs == get_preset("best").epochs == 12
    assert get_preset("best", cpu, precision="fp32").epochs == 8
    assert get_preset("best", cpu, precision="fp32", epochs=3).epochs == 3  # asked for: kept
    # fast trains the same network there with 8 channels at full resolution, at its rate for them;
    # asked-for fields win.
    native_fast = get_preset("fast", cpu, precision="bf16")
    assert native_fast == replace(get_preset("fast"), precision="bf16")
    assert (native_fast.widths, native_fast.bottleneck_blocks, native_fast.half_scores) == ((16, 32, 64), 3, False)
    assert (native_fast.head_lr_scale, native_fast.subset, native_fast.vote) == (300.0, 24_000, "region")
    fp32_fast = get_preset("fast", cpu, precision="fp32")
    assert fp32_fast == replace(native_fast, precision="fp32", widths=(8, 32, 64), lr=2.4e-2)
    assert get_preset("fast", cpu, precision="fp32", head_lr_scale=30.0).head_lr_scale == 30.0
    assert get_preset("fast", cpu, precision="fp32", lr=0.01).widths == (8, 32, 64)
    assert get_preset("fast", cpu, precision="fp32", widths=(4, 8, 16)).widths == (4, 8, 16)
    assert get_preset("fast", torch.device("cuda"), precision="fp32").widths == (16, 32, 64)  # a CPU rule
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("turbo")
    with pytest.raises(ValueError, match="unknown recipe field"):
        get_preset("fast", colour="red")
    with pytest.raises(ValueError, match="precision"):
        get_preset("fast", precision="fp8")
    with pytest.raises(ValueError, match="ema_decay"):
        get_preset("fast", ema_decay=1.0)
    with pytest.raises(ValueError, match="subset"):
        get_preset("fast", subset=3)
    # The concat decoder uses every level: asked for without --half-scores, it gets them.
    assert get_preset("fast", decoder="concat").half_scores
    with pytest.raises(ValueError, match="add --half-scores"):
        get_preset("fast", decoder="concat", half_scores=False)
    # Scenes' digits can touch: their presets take the parts rule, and the region vote is refused.
    assert get_preset("fast").vote == get_preset("best").vote == "region"
    assert get_preset("fast", dataset="scenes").vote == get_preset("fast", dataset="rows").vote == "parts"
    with pytest.raises(ValueError, match="use --vote parts or --vote none"):
        get_preset("fast", dataset="scenes", vote="region")
    # config.json before the parts rule wrote a flag: true was the region vote.
    assert Recipe(vote=True).vote == "region" and Recipe(vote=False).vote == "none"
    with pytest.raises(ValueError, match="vote must be one of none, region, parts"):
        Recipe(vote="majority")


# Each preset at a small budget, seed 0, and the validation IoU it must clear. Measured by
# hand with these very runs, seeds 0-2, on both CPU classes (native bf16 / AVX2 fp32), 2026-12-02:
# fast 0.855-0.868 / 0.858-0.868, best 0.811-0.854 / 0.819-0.849, reference 0.322-0.388 /
# 0.330-0.445; each floor is the least of them less a margin. A broken loss, optimizer, mask
# rule or network stays near 0.03 here (best with its moving average on, 0.0).
QUALITY_FLOORS = {
    "fast": ({"subset": 6_000}, 0.80),
    # best without its moving average: over a few hundred steps the average still holds the first weights.
    "best": ({"subset": 6_000, "epochs": 1, "ema_decay": 0.0}, 0.75),
    # 100 steps of the article's recipe (batch 20 instead of 100, for steps).
    "reference": ({"subset": 2_400, "epochs": 1, "num_workers": 0, "batch_size": 20}, 0.25),
}


@pytest.mark.parametrize("preset", sorted(QUALITY_FLOORS))
def test_each_preset_clears_its_quality_floor_at_a_small_budget(data_root: Path, tmp_path: Path, preset: str) -> None:
    overrides, floor = QUALITY_FLOORS[preset]
    record = fit(get_preset(preset, **overrides), data_root, tmp_path, CPU, log=quiet)
    assert record.best["val"]["iou"] >= floor


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_per_item_dataset_loader_trains_too(data_root: Path, tmp_path: Path, num_workers: int) -> None:
    # Two epochs, so that with 2 workers the persistent workers serve a second epoch.
    recipe = get_preset("reference", subset=120, epochs=2, widths=(4, 8, 16), num_workers=num_workers)
    record = fit(recipe, data_root, tmp_path / "a", CPU, log=quiet)
    # Validation saw exactly the 20 held-out images of the 5:1 split: their foreground pixels, once.
    images, labels = load_arrays(data_root, train=True)
    _, val_index = split_indices(120, seed=recipe.seed)
    val_masks = masks_from_images(images[val_index].float() / 255, labels[val_index])
    assert len(val_index) == 20
    for epoch in (record.best, record.last):
        assert epoch["val"]["tp"] + epoch["val"]["fn"] == int((val_masks > 0).sum())
    assert record.last["epoch"] == 2
    # The workers' augmentation is seeded from the run's seed: the same run twice, the same weights.
    fit(recipe, data_root, tmp_path / "b", CPU, log=quiet)
    first, second = (load_weights(tmp_path / name / "last.safetensors") for name in "ab")
    assert all(first[key].equal(second[key]) for key in first)


def test_training_is_reproducible_and_ema_saves_the_average(data_root: Path, tmp_path: Path) -> None:
    recipe = get_preset("fast", subset=240, epochs=1, widths=(4, 8, 16), augment=True)
    first = fit(recipe, data_root, tmp_path / "a", CPU, log=quiet)
    second = fit(recipe, data_root, tmp_path / "b", CPU, log=quiet)
    fit(replace(recipe, ema_decay=0.9), data_root, tmp_path / "c", CPU, log=quiet)
    weights = {name: load_weights(tmp_path / name / "last.safetensors") for name in "abc"}
    assert all(weights["a"][key].equal(weights["b"][key]) for key in weights["a"])
    assert first.last["val"] == second.last["val"]
    # With a moving average, the saved weights are the average's, not the trained network's.
    state, _ = load_training_state(tmp_path / "c" / STATE_FILE)
    saved = weights["c"]
    assert all(saved[key].equal(state[f"ema.module.{key}"]) for key in saved)
    assert not all(saved[key].equal(state[f"model.{key}"]) for key in saved if saved[key].is_floating_point())


@pytest.mark.parametrize("decoder", ["scores", "concat"])
def test_the_full_resolution_head_takes_larger_steps(data_root: Path, decoder: str) -> None:
    # Adam's first step moves every weight with a gradient by its learning rate, whatever the
    # gradient's size (m / sqrt(v) = g / |g|): lr for the network, lr x head_lr_scale for the head.
    recipe = get_preset(
        "fast", subset=60, batch_size=8, schedule="constant", lr=1e-3, head_lr_scale=50.0, decoder=decoder,
        precision="fp32", channels_last=False, ema_decay=0.0,
    )  # fmt: skip
    run = build_run(recipe, data_root, CPU, DistributedContext(), quiet)
    model = run.parts.model
    head = model.pixel_head
    assert head is (model.where if decoder == "scores" else model.head)
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    first_batch = next(iter(run.parts.batches))
    train_one_epoch(model, [first_batch], run.criterion, run.parts.optimizer, None, CPU)
    head_names = {
        name for name, parameter in model.named_parameters() if any(parameter is p for p in head.parameters())
    }
    assert head_names == {f"{'where' if decoder == 'scores' else 'head'}.{kind}" for kind in ("weight", "bias")}
    for name, parameter in model.named_parameters():
        step = (parameter.detach() - before[name]).abs()
        moved = step[step > 0]
        expected = 1e-3 * (50.0 if name in head_names else 1.0)
        # At most lr (x scale), and about that for most weights: eps only shrinks the tiniest gradients' steps.
        assert len(moved) > 0 and moved.max() <= expected * 1.001, name
        assert abs(moved.median().item() - expected) < 0.01 * expected, name


def test_a_notebook_without_ipywidgets_gets_plain_lines_and_the_extra_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from mnistseg.progress import EpochProgress

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))  # as inside a Jupyter kernel
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: importing it fails
    lines: list[str] = []
    with pytest.warns(UserWarning, match=r"pip install -e '\.\[notebook\]'"):
        progress = EpochProgress(100, "epoch 1/1", lines.append)
    assert progress.bar is None
    for _ in range(4):
        progress(25, 0.5)  # 25, 50, 75: a line each ~10%; 100 is the epoch's own line
    progress.close()
    assert len(lines) == 3 and lines[0].startswith("  epoch 1/1   25/100 images"), lines
