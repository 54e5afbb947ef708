"""Stage 4: training. Recipes, the epoch loop, checkpoints.

A :class:`Recipe` is everything that decides a training run. Named presets:

* ``reference``: the recipe of the article, exactly: width 64, batch 100, Adam at a
  constant 1e-3, 20 epochs, per-item ``Dataset`` with the random affine in 4 DataLoader
  workers, float32. About 2 hours on 2 CPU cores.
* ``quick``: what ``make run`` trains: width 16, in-memory batched augmentation, bf16
  autocast, channels_last and a one-cycle learning rate; a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import io
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from mnistseg.data import (
    NUM_CLASSES,
    BatchedLoader,
    SegmentationMNIST,
    class_names,
    load_arrays,
    reference_train_transform,
    split_indices,
)
from mnistseg.device import PRECISIONS, autocast
from mnistseg.evaluate import EVAL_BATCH_SIZE, evaluate, predict_logits
from mnistseg.figures import save_learning_curve, save_overlay_grid
from mnistseg.metrics import summarize
from mnistseg.model import ModelConfig, SimpleUNet, count_parameters
from mnistseg.storage import (
    CONFIG_FILE,
    LAST_WEIGHTS_FILE,
    WEIGHTS_FILE,
    atomic_write_json,
    atomic_write_text,
    save_weights,
)

DEFAULT_PRESET = "quick"
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "tp", "fp", "fn", "iou", "dice", "lr", "seconds")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run (stored in ``config.json``).

    Attributes:
        name: the preset this recipe started from.
        epochs: passes over the training split.
        batch_size: images per optimizer step.
        lr: Adam's learning rate (the peak of the one-cycle schedule).
        base_width: the U-Net's channels at full resolution.
        schedule: "constant" or "onecycle" (warm up, then anneal to ~0, per step).
        precision: "fp32", "bf16" or "fp16" autocast.
        loader: "batched" (in-memory, batch augmentation) or "dataset" (per-item).
        num_workers: DataLoader worker processes (loader "dataset" only).
        channels_last: NHWC memory layout, faster convolutions on CPUs and tensor cores.
        mask_mode: batched loader: "derive" the mask from the augmented image, or "warp" it.
        augment: apply the random affine to the training split.
        ema_decay: keep an exponential moving average of the weights with this decay per
            step, and validate and save the average (0 turns it off).
        tta: evaluate with test-time averaging of the logits over 1-pixel shifts.
        seed: seeds the split, the initial weights, the order and the augmentation.
        threshold: intensity over which a pixel is foreground.
        dataset: "mnist" or "fashion-mnist".
        subset: use only the first N training images (then split 5:1); None for all.
    """

    name: str = "custom"
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    base_width: int = 64
    schedule: str = "constant"
    precision: str = "fp32"
    loader: str = "dataset"
    num_workers: int = 4
    channels_last: bool = False
    mask_mode: str = "warp"
    augment: bool = True
    ema_decay: float = 0.0
    tta: bool = False
    seed: int = 0
    threshold: float = 0.2
    dataset: str = "mnist"
    subset: int | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "base_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.subset is not None and self.subset < 6:
            raise ValueError(f"subset must be at least 6 images (it is split 5:1), got {self.subset}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        choices = {
            "schedule": ("constant", "onecycle"),
            "precision": PRECISIONS,
            "loader": ("batched", "dataset"),
            "mask_mode": ("derive", "warp"),
            "dataset": ("mnist", "fashion-mnist"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")

    @property
    def model(self) -> ModelConfig:
        """The model this recipe trains."""
        return ModelConfig(in_channels=1, num_classes=NUM_CLASSES, base_width=self.base_width)


def presets() -> dict[str, Recipe]:
    """The named recipes (a new dict each call: nothing global to mutate)."""
    return {
        "reference": Recipe(name="reference"),
        "quick": Recipe(
            name="quick",
            epochs=3,
            batch_size=128,
            lr=4e-3,
            base_width=16,
            schedule="onecycle",
            precision="bf16",
            loader="batched",
            num_workers=0,
            channels_last=True,
            mask_mode="derive",
        ),
    }


def get_preset(name: str, **overrides: Any) -> Recipe:
    """A preset with some fields replaced, e.g. ``get_preset("quick", epochs=1)``.

    Raises:
        ValueError: for an unknown preset or field, or an invalid value.
    """
    known = presets()
    if name not in known:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(known)}")
    field_names = {field.name for field in fields(Recipe)}
    unknown = set(overrides) - field_names
    if unknown:
        raise ValueError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
    return replace(known[name], **overrides)


def make_batches(
    recipe: Recipe, root: str | Path, device: torch.device
) -> tuple[Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]], int, int]:
    """The training and validation batches of a recipe: same split for both loaders.

    Returns:
        ``(train_batches, val_batches, train_size, val_size)``.
    """
    images, labels = load_arrays(root, train=True, dataset=recipe.dataset)
    count = len(labels) if recipe.subset is None else min(recipe.subset, len(labels))
    train_index, val_index = split_indices(count, recipe.seed)
    if recipe.loader == "batched":
        train = BatchedLoader(
            images[train_index], labels[train_index], recipe.batch_size, recipe.threshold,
            augment=recipe.augment, shuffle=True, seed=recipe.seed + 1, device=device, mask_mode=recipe.mask_mode,
        )  # fmt: skip
        val = BatchedLoader(images[val_index], labels[val_index], EVAL_BATCH_SIZE, recipe.threshold, device=device)
        return train, val, len(train_index), len(val_index)
    fashion = recipe.dataset == "fashion-mnist"
    transform = reference_train_transform() if recipe.augment else None
    train_set = SegmentationMNIST(root, recipe.threshold, train=True, transform=transform, fashion=fashion)
    val_set = SegmentationMNIST(root, recipe.threshold, train=True, fashion=fashion)
    common = {"num_workers": recipe.num_workers, "persistent_workers": recipe.num_workers > 0}
    train = DataLoader(
        Subset(train_set, train_index.tolist()), batch_size=recipe.batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(recipe.seed + 1), **common,
    )  # fmt: skip
    val = DataLoader(Subset(val_set, val_index.tolist()), batch_size=recipe.batch_size, **common)
    return train, val, len(train_index), len(val_index)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    progress: tqdm | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
) -> float:
    """One pass over the training batches; returns the mean loss per batch.

    Args:
        model: the network, put in train mode here.
        batches: ``(images float [B, 1, H, W], masks int64 [B, H, W])`` pairs.
        criterion: ``nn.CrossEntropyLoss`` on logits ``[B, C, H, W]`` and masks ``[B, H, W]``.
        optimizer: steps once per batch.
        scheduler: stepped once per batch, if given.
        device: where the model is.
        precision: autocast precision.
        channels_last: feed the model NHWC tensors.
        progress: a tqdm bar to advance per batch.
        ema: a moving average of the weights, updated after each step.
    """
    model.train()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    total, steps = 0.0, 0
    for images, masks in batches:
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(images)  # (B, C, H, W)
        loss = criterion(logits.float(), masks)  # the loss in float32 whatever the autocast
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total += loss.item()
        steps += 1
        if progress is not None:
            progress.update(len(images))
            progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    return total / max(steps, 1)


def versions() -> dict[str, str]:
    """Versions of what produced a result, for ``config.json``."""
    import torchvision

    from mnistseg import __version__

    return {
        "mnistseg": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def metrics_csv(history: list[dict[str, Any]]) -> str:
    """The epoch rows as CSV text, header first."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({key: row[key] for key in METRICS_COLUMNS})
    return buffer.getvalue()


def format_epoch(row: dict[str, Any], epochs: int) -> str:
    """One compact line per epoch."""
    return (
        f"epoch {row['epoch']:>2}/{epochs}  train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
        f"TP {row['tp']:,}  FP {row['fp']:,}  FN {row['fn']:,}  IoU {row['iou']:.4f}  Dice {row['dice']:.4f}  "
        f"{row['seconds']:.1f}s"
    )


def fit(
    recipe: Recipe,
    root: str | Path,
    out: str | Path,
    device: torch.device,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a recipe, validating each epoch, and write everything into ``out``.

    Writes ``model.safetensors`` (best validation IoU), ``last.safetensors``,
    ``config.json``, ``metrics.csv``, ``learning_curve.png`` and one validation overlay
    per epoch under ``figures/``; all atomically.

    Args:
        recipe: what to train.
        root: data root.
        out: output folder, created if needed.
        device: where to train.
        log: where the progress lines go (default: print, flushed at once).

    Returns:
        The ``config.json`` contents.
    """
    log = log or partial(print, flush=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = class_names(recipe.dataset)
    torch.manual_seed(recipe.seed)  # the initial weights
    model = SimpleUNet.from_config(recipe.model).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_batches, val_batches, train_size, val_size = make_batches(recipe, root, device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    scheduler = None
    if recipe.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=recipe.epochs * len(train_batches), pct_start=0.25
        )
    ema = None
    if recipe.ema_decay > 0:
        # The average of the weights over the last ~1/(1-decay) steps, BatchNorm statistics included.
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True
        )
    final_model = model if ema is None else ema.module  # what is validated and saved
    log(
        f"training {recipe.name}: SimpleUNet width {recipe.base_width} ({count_parameters(model):,} parameters), "
        f"{train_size:,} train / {val_size:,} val images, {recipe.epochs} epochs, {recipe.loader} loader, "
        f"{recipe.precision} on {device}"
    )
    config: dict[str, Any] = {
        "model": asdict(recipe.model),
        "recipe": asdict(recipe),
        "dataset": recipe.dataset,
        "threshold": recipe.threshold,
        "class_names": list(names),
        "versions": versions(),
    }
    first_val_images = next(iter(val_batches))[0][:100].to(device)
    history: list[dict[str, Any]] = []
    best_iou = -1.0
    for epoch in range(1, recipe.epochs + 1):
        started = time.perf_counter()
        show_bar = sys.stderr.isatty()
        with tqdm(total=train_size, desc=f"epoch {epoch}", unit="img", leave=False, disable=not show_bar) as bar:
            train_loss = train_one_epoch(
                model, train_batches, criterion, optimizer, scheduler, device,
                recipe.precision, recipe.channels_last, bar, ema,
            )  # fmt: skip
        val_loss, confusion = evaluate(
            final_model, val_batches, len(names), device, recipe.precision, recipe.channels_last, recipe.tta
        )
        val = summarize(confusion, names)
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            **{key: val[key] for key in ("tp", "fp", "fn", "iou", "dice")},
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        log(format_epoch(row, recipe.epochs))

        save_weights(out / LAST_WEIGHTS_FILE, final_model)
        if (val["iou"] or 0.0) > best_iou:
            best_iou = val["iou"] or 0.0
            save_weights(out / WEIGHTS_FILE, final_model)
            config["best"] = {"epoch": epoch, "val": val}
        config["last"] = {"epoch": epoch, "val": val}
        atomic_write_json(out / CONFIG_FILE, config)
        atomic_write_text(out / "metrics.csv", metrics_csv(history))
        with torch.inference_mode():
            logits = predict_logits(final_model, first_val_images, recipe.precision, recipe.channels_last, recipe.tta)
        save_overlay_grid(
            first_val_images, logits.argmax(dim=1), out / "figures" / f"val_epoch_{epoch:03d}.png", names,
            title=f"Validation batch after epoch {epoch}: predicted masks (IoU {row['iou']:.4f})",
        )  # fmt: skip
    save_learning_curve(history, out / "learning_curve.png")
    return config
