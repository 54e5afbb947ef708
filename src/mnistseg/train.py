"""Stage 4: training. The batches of a recipe, the epoch loop, checkpoints.

:func:`fit` trains a :class:`~mnistseg.recipes.Recipe`: one :func:`train_one_epoch` per
epoch, then a validation pass (:func:`mnistseg.evaluate.evaluate`), then the best and
last weights, ``config.json``, ``metrics.csv`` and a figure, all written atomically.
Under ``torchrun`` each process trains on its shard and only rank 0 writes
(:mod:`mnistseg.distributed`).
"""

from __future__ import annotations

import csv
import io
import platform
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from mnistseg.data import (
    BatchedLoader,
    SegmentationMNIST,
    class_names,
    load_arrays,
    reference_train_transform,
    split_indices,
)
from mnistseg.device import autocast, set_float32_precision
from mnistseg.distributed import DistributedContext, all_reduce_sum, barrier, per_rank_batch_size
from mnistseg.evaluate import EVAL_BATCH_SIZE, evaluate, predict_logits
from mnistseg.figures import save_learning_curve, save_overlay_grid
from mnistseg.metrics import summarize
from mnistseg.model import SimpleUNet, count_parameters
from mnistseg.recipes import Recipe, recipe_differences
from mnistseg.resume import STATE_FILE, Progress, TrainingParts, restore_training_state, save_training_state
from mnistseg.scenes import SCENES_PER_DIGIT, scene_batches
from mnistseg.storage import (
    CONFIG_FILE,
    LAST_WEIGHTS_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    atomic_write_json,
    atomic_write_text,
    read_checkpoint_config,
    save_weights,
)


class NonFiniteLossError(Exception):
    """The training loss became NaN or infinite; nothing of that epoch was written."""


MIN_ONECYCLE_STEPS = 4
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "tp", "fp", "fn", "iou", "dice", "lr", "seconds")


def make_batches(
    recipe: Recipe, root: str | Path, device: torch.device, context: DistributedContext | None = None
) -> tuple[Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]], int, int]:
    """The training and validation batches of a recipe: same split for both loaders.

    Under torchrun (``context.enabled``) each rank gets its shard: the same shuffled
    order on every rank, cut into ``world_size`` interleaved parts, and a per-rank batch
    of ``batch_size / world_size`` so that one step still sees the preset's batch.

    Returns:
        ``(train_batches, val_batches, train_size, val_size)``, sizes of the whole split.
    """
    context = context or DistributedContext()
    images, labels = load_arrays(root, train=True, dataset=recipe.dataset)
    count = len(labels) if recipe.subset is None else min(recipe.subset, len(labels))
    train_index, val_index = split_indices(count, recipe.seed)
    shard = {"rank": context.rank, "world_size": context.world_size}
    if recipe.dataset == "scenes":
        if recipe.loader != "batched" or recipe.augment:
            raise ValueError("scenes train with the batched loader and without augmentation: add --no-augment")

        def scenes_of(index: Tensor) -> int:
            return max(1, round(len(index) * SCENES_PER_DIGIT))

        train = scene_batches(
            images[train_index], labels[train_index], scenes_of(train_index), recipe.seed + 11,
            per_rank_batch_size(recipe.batch_size, context), recipe.threshold,
            shuffle=True, seed=recipe.seed + 1, device=device, **shard,
        )  # fmt: skip
        val = scene_batches(
            images[val_index], labels[val_index], scenes_of(val_index), recipe.seed + 12,
            EVAL_BATCH_SIZE, recipe.threshold, device=device, **shard,
        )  # fmt: skip
        return train, val, len(train.labels), len(val.labels)
    if recipe.loader == "batched":
        train = BatchedLoader(
            images[train_index], labels[train_index], per_rank_batch_size(recipe.batch_size, context),
            recipe.threshold, augment=recipe.augment, shuffle=True, seed=recipe.seed + 1, device=device,
            mask_mode=recipe.mask_mode, **shard,
        )  # fmt: skip
        val = BatchedLoader(
            images[val_index], labels[val_index], EVAL_BATCH_SIZE, recipe.threshold, device=device, **shard
        )
        return train, val, len(train_index), len(val_index)
    if context.enabled:
        raise ValueError("distributed training uses the in-memory batched loader; drop --loader dataset")
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
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at step {steps + 1} of this epoch; training stopped and the last "
                "complete epoch's checkpoint is kept (try a lower --lr)"
            )
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
    context: DistributedContext | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train a recipe, validating each epoch, and write everything into ``out``.

    Writes ``model.safetensors`` (best validation IoU), ``last.safetensors``,
    ``config.json``, ``metrics.csv``, ``learning_curve.png`` and one validation overlay
    per epoch under ``figures/``; all atomically, and only on rank 0.

    Args:
        recipe: what to train.
        root: data root.
        out: output folder, created if needed.
        device: where to train.
        log: where the progress lines go (default: print, flushed at once; rank 0 only).
        context: this process's place under torchrun (default: a single process).
        resume: continue the run in ``out`` after its last complete epoch
            (``training_state.safetensors``); its recipe must equal ``recipe``.

    Raises:
        CheckpointError: when resuming a run of another recipe or a damaged state.
        NonFiniteLossError: when the loss stops being finite.

    Returns:
        The ``config.json`` contents.
    """
    context = context or DistributedContext()
    log = (log or partial(print, flush=True)) if context.is_main else (lambda line: None)
    out = Path(out)
    if resume:  # before anything is loaded: a run of another recipe is refused as such
        different = recipe_differences(read_checkpoint_config(out).get("recipe", {}), recipe)
        if different:
            raise CheckpointError(f"cannot resume {out}: it was trained with another recipe ({different})")
    if context.is_main:
        out.mkdir(parents=True, exist_ok=True)
    names = class_names(recipe.dataset)
    set_float32_precision(device, recipe.precision)
    torch.manual_seed(recipe.seed)  # the initial weights: the same on every rank
    model = SimpleUNet.from_config(recipe.model).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_batches, val_batches, train_size, val_size = make_batches(recipe, root, device, context)
    trained: nn.Module = model
    if context.enabled:
        # Averages the gradients over the ranks inside backward(); BatchNorm statistics stay per rank.
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    scheduler = None
    total_steps = recipe.epochs * len(train_batches)
    if recipe.schedule == "onecycle" and total_steps >= MIN_ONECYCLE_STEPS:
        # Warm up over a quarter of the steps (at least 2), then anneal to ~0.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.lr, total_steps=total_steps, pct_start=max(0.25, 2 / total_steps)
        )
    elif recipe.schedule == "onecycle":
        log(f"only {total_steps} steps: too few for a one-cycle schedule, the learning rate stays at {recipe.lr}")
    ema = None
    if recipe.ema_decay > 0:
        # The average of the weights over the last ~1/(1-decay) steps, BatchNorm statistics included.
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True
        )
    final_model = model if ema is None else ema.module  # what is validated and saved
    parts = TrainingParts(model, ema, optimizer, scheduler, train_batches)
    processes = f" x {context.world_size} processes" if context.enabled else ""
    log(
        f"training {recipe.name}: SimpleUNet width {recipe.base_width} ({count_parameters(model):,} parameters), "
        f"{train_size:,} train / {val_size:,} val images, {recipe.epochs} epochs, {recipe.loader} loader, "
        f"{recipe.precision} on {device}{processes}"
    )
    config: dict[str, Any] = {
        "model": asdict(recipe.model),
        "recipe": asdict(recipe),
        "dataset": recipe.dataset,
        "threshold": recipe.threshold,
        "class_names": list(names),
        "world_size": context.world_size,
        "versions": versions(),
    }
    progress = Progress(config=config)
    if resume:
        progress = restore_training_state(out / STATE_FILE, parts, context)
        config = progress.config
        if progress.epoch >= recipe.epochs:
            log(f"{out} already finished its {recipe.epochs} epochs; nothing to do")
            return config
        log(f"resuming {out} after epoch {progress.epoch} of {recipe.epochs}")
        if context.is_main:  # rows of an epoch killed half-way never reach metrics.csv
            atomic_write_text(out / "metrics.csv", metrics_csv(progress.history))
    first_val_images = next(iter(val_batches))[0][:100].to(device)
    history = progress.history
    best_iou = progress.best_iou
    for epoch in range(progress.epoch + 1, recipe.epochs + 1):
        started = time.perf_counter()
        show_bar = sys.stderr.isatty() and context.is_main
        with tqdm(total=train_size, desc=f"epoch {epoch}", unit="img", leave=False, disable=not show_bar) as bar:
            train_loss = train_one_epoch(
                trained, train_batches, criterion, optimizer, scheduler, device,
                recipe.precision, recipe.channels_last, bar, ema,
            )  # fmt: skip
        train_loss = all_reduce_sum(torch.tensor([train_loss], device=device), context).item() / context.world_size
        val_loss, confusion = evaluate(
            final_model, val_batches, len(names), device, recipe.precision, recipe.channels_last, context=context
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
        if context.is_main:
            save_weights(out / LAST_WEIGHTS_FILE, final_model)
            if (val["iou"] or 0.0) > best_iou:
                best_iou = val["iou"] or 0.0
                save_weights(out / WEIGHTS_FILE, final_model)
                config["best"] = {"epoch": epoch, "val": val}
            config["last"] = {"epoch": epoch, "val": val}
            atomic_write_json(out / CONFIG_FILE, config)
            atomic_write_text(out / "metrics.csv", metrics_csv(history))
            with torch.inference_mode():
                logits = predict_logits(final_model, first_val_images, recipe.precision, recipe.channels_last)
            save_overlay_grid(
                first_val_images, logits.argmax(dim=1), out / "figures" / f"val_epoch_{epoch:03d}.png", names,
                title=f"Validation batch after epoch {epoch}: predicted masks (IoU {row['iou']:.4f})",
            )  # fmt: skip
        # Last, in one file: the point a resumed run continues from.
        save_training_state(out / STATE_FILE, parts, Progress(epoch, history, best_iou, config), context)
        barrier(context)  # the other ranks wait while rank 0 writes
    if context.is_main:
        save_learning_curve(history, out / "learning_curve.png")
    return config
