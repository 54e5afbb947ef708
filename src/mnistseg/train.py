"""Stage 7: training. The batches of a recipe, the epoch loop, checkpoints.

:func:`fit` trains a :class:`~mnistseg.recipes.Recipe`: one :func:`train_one_epoch` per
epoch, then a validation pass (:func:`mnistseg.evaluate.evaluate`), then the best and
last weights, ``config.json``, ``metrics.csv`` and a figure, all written atomically.
Under ``torchrun`` each process trains on its shard and only rank 0 writes
(:mod:`mnistseg.distributed`).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from mnistseg.checkpoint import (
    LAST_WEIGHTS_FILE,
    WEIGHTS_FILE,
    CheckpointRecord,
    check_resumable,
    save_weights,
    write_record,
)
from mnistseg.data import (
    SegmentationMNIST,
    class_names,
    load_arrays,
    reference_train_transform,
    split_batches,
    split_indices,
)
from mnistseg.device import autocast, resolve_precision, set_float32_precision
from mnistseg.distributed import DistributedContext, all_reduce_sum, barrier, per_rank_batch_size
from mnistseg.evaluate import EVAL_BATCH_SIZE, evaluate
from mnistseg.figures import save_learning_curve, save_overlay_grid
from mnistseg.files import atomic_write_text
from mnistseg.inference import predict_logits
from mnistseg.metrics import summarize
from mnistseg.model import SimpleUNet, count_parameters
from mnistseg.model_card import write_model_card
from mnistseg.postprocess import NETWORK_ALONE, masks_from_logits
from mnistseg.progress import EpochProgress
from mnistseg.recipes import Recipe
from mnistseg.resume import STATE_FILE, Progress, TrainingParts, restore_training_state, save_training_state


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
    if recipe.loader == "batched":
        common = {"dataset": recipe.dataset, "threshold": recipe.threshold, "seed": recipe.seed, "device": device,
                  "rank": context.rank, "world_size": context.world_size}  # fmt: skip
        train = split_batches(
            images=images[train_index], labels=labels[train_index], split="train",
            batch_size=per_rank_batch_size(recipe.batch_size, context), augment=recipe.augment,
            mask_mode=recipe.mask_mode, **common,
        )  # fmt: skip
        val = split_batches(images=images[val_index], labels=labels[val_index], split="val",
                            batch_size=EVAL_BATCH_SIZE, **common)  # fmt: skip
        return train, val, len(train.labels), len(val.labels)
    if context.enabled:
        raise ValueError("distributed training uses the in-memory batched loader; drop --loader dataset")
    transform = reference_train_transform() if recipe.augment else None
    train_set = SegmentationMNIST(root, recipe.threshold, train=True, transform=transform, dataset=recipe.dataset)
    val_set = SegmentationMNIST(root, recipe.threshold, train=True, dataset=recipe.dataset)
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
    progress: Callable[[int, float], None] | None = None,
    ema: torch.optim.swa_utils.AveragedModel | None = None,
) -> list[float]:
    """One pass over the training batches; returns the loss of every batch, in order.

    Args:
        model: the network, put in train mode here.
        batches: ``(images float [B, 1, H, W], masks int64 [B, H, W])`` pairs.
        criterion: ``nn.CrossEntropyLoss`` on logits ``[B, C, H, W]`` and masks ``[B, H, W]``.
        optimizer: steps once per batch.
        scheduler: stepped once per batch, if given.
        device: where the model is.
        precision: autocast precision.
        channels_last: feed the model NHWC tensors.
        progress: called after each step with the batch's image count and loss
            (e.g. an :class:`EpochProgress`).
        ema: a moving average of the weights, updated after each step.
    """
    model.train()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    losses: list[float] = []
    for images, masks in batches:
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            logits = model(images)  # (B, C, H, W)
        loss = criterion(logits.float(), masks)  # the loss in float32 whatever the autocast
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at step {len(losses) + 1} of this epoch; training stopped and the last "
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
        losses.append(loss.item())
        if progress is not None:
            progress(len(images), losses[-1])
    return losses


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


@dataclass
class TrainingRun:
    """Everything one training run is built from (see :func:`build_run`).

    Attributes:
        parts: what is saved after each epoch and restored on resume (model, moving
            average, optimizer, schedule, training batches).
        trained: the module the steps run through (the model, or its DDP wrapper).
        final_model: what is validated and saved (the moving average, if there is one).
        criterion: the per-pixel cross-entropy.
        val_batches: the validation batches.
        train_size: images in the training split; val_size: in the validation split.
        precision: the autocast precision the steps and validation run in (the recipe's,
            "auto" resolved for this device).
    """

    parts: TrainingParts
    trained: nn.Module
    final_model: nn.Module
    criterion: nn.Module
    val_batches: Iterable[tuple[Tensor, Tensor]]
    train_size: int
    val_size: int
    precision: str


def parameter_groups(model: SimpleUNet, recipe: Recipe) -> list[dict[str, Any]]:
    """Adam's two parameter groups: the network at ``recipe.lr``, its full-resolution head faster.

    Where a stroke ends is a threshold of the pixel's own intensity, and the head sees that
    intensity (``input_to_head``). To tell two adjacent 1/255 levels apart its logit must
    change by a few units per 1/255, a weight of several hundred; Adam moves each weight by
    about ``lr`` per step, so at the network's rate it gets nowhere near in a short run.

    Args:
        model: the network; its :attr:`SimpleUNet.pixel_head` forms the second group.
        recipe: gives ``lr`` and ``head_lr_scale``.

    Returns:
        ``[{"params": the rest}, {"params": the head's weight and bias, "lr": lr * head_lr_scale}]``.
    """
    head = list(model.pixel_head.parameters())
    in_head = {id(parameter) for parameter in head}
    rest = [parameter for parameter in model.parameters() if id(parameter) not in in_head]
    return [{"params": rest}, {"params": head, "lr": recipe.lr * recipe.head_lr_scale}]


def build_run(
    recipe: Recipe, root: str | Path, device: torch.device, context: DistributedContext, log: Callable[[str], None]
) -> TrainingRun:
    """Seed, then build the model, its batches, optimizer, schedule and moving average."""
    torch.manual_seed(recipe.seed)  # the initial weights: the same on every rank
    model = SimpleUNet.from_config(recipe.model).to(device)
    if recipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_batches, val_batches, train_size, val_size = make_batches(recipe, root, device, context)
    trained: nn.Module = model
    if context.enabled:
        # Averages the gradients over the ranks inside backward(); BatchNorm statistics stay per rank.
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    # The fused kernel updates all parameters in one call: about 8% more images/s for the fast preset on a CPU.
    optimizer = torch.optim.Adam(parameter_groups(model, recipe), lr=recipe.lr, fused=device.type in ("cpu", "cuda"))
    scheduler = None
    total_steps = recipe.epochs * len(train_batches)
    if recipe.schedule == "onecycle" and total_steps >= MIN_ONECYCLE_STEPS:
        # Warm up over a quarter of the steps (at least 2), then anneal to ~0.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=max(0.25, 2 / total_steps),
        )
    elif recipe.schedule == "onecycle":
        log(f"only {total_steps} steps: too few for a one-cycle schedule, the learning rate stays at {recipe.lr}")
    ema = None
    if recipe.ema_decay > 0:
        # The average of the weights over the last ~1/(1-decay) steps, BatchNorm statistics included.
        ema = torch.optim.swa_utils.AveragedModel(
            model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True
        )
    return TrainingRun(
        parts=TrainingParts(model, ema, optimizer, scheduler, train_batches),
        trained=trained,
        final_model=model if ema is None else ema.module,
        criterion=nn.CrossEntropyLoss(),
        val_batches=val_batches,
        train_size=train_size,
        val_size=val_size,
        precision=resolve_precision(recipe.precision, device),
    )


def run_epoch(
    run: TrainingRun, recipe: Recipe, epoch: int, device: torch.device, context: DistributedContext,
    log: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Train one epoch, then validate; returns the history row and the validation summary.

    The row holds the ``metrics.csv`` columns (``seconds``: training and validation), plus
    ``train_seconds`` and ``batch_losses``: rank 0's loss at each step.
    """
    started = time.perf_counter()
    parts = run.parts
    progress = EpochProgress(run.train_size, f"epoch {epoch}/{recipe.epochs}", log, enabled=context.is_main)
    try:
        batch_losses = train_one_epoch(
            run.trained, parts.batches, run.criterion, parts.optimizer, parts.scheduler, device,
            precision=run.precision, channels_last=recipe.channels_last, progress=progress, ema=parts.ema,
        )  # fmt: skip
    finally:
        progress.close()
    train_seconds = time.perf_counter() - started
    train_loss = sum(batch_losses) / max(len(batch_losses), 1)
    train_loss = all_reduce_sum(torch.tensor([train_loss], device=device), context).item() / context.world_size
    names = class_names(recipe.dataset)
    result = evaluate(
        run.final_model, run.val_batches, len(names), device,
        precision=run.precision, channels_last=recipe.channels_last, context=context,
    )  # fmt: skip
    val = summarize(result.confusion, names)
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": result.loss,
        **{key: val[key] for key in ("tp", "fp", "fn", "iou", "dice")},
        "lr": parts.optimizer.param_groups[0]["lr"],
        "seconds": time.perf_counter() - started,
        "train_seconds": train_seconds,
        "batch_losses": batch_losses,
    }
    return row, val


def write_epoch_files(
    out: Path, run: TrainingRun, record: CheckpointRecord, history: list[dict[str, Any]], val: dict[str, Any],
    first_val_images: Tensor,
) -> None:  # fmt: skip
    """Rank 0's files after an epoch: last (and maybe best) weights, ``config.json``, ``metrics.csv``, a figure."""
    row = history[-1]
    save_weights(out / LAST_WEIGHTS_FILE, run.final_model)
    best_iou = (record.best or {}).get("val", {}).get("iou") or -1.0
    if (val["iou"] or 0.0) > best_iou:
        save_weights(out / WEIGHTS_FILE, run.final_model)
        record.best = {"epoch": row["epoch"], "val": val}
    record.last = {"epoch": row["epoch"], "val": val}
    write_record(out, record)
    write_model_card(out, record)
    atomic_write_text(out / "metrics.csv", metrics_csv(history))
    recipe = record.recipe
    with torch.inference_mode():
        logits = predict_logits(run.final_model, first_val_images, run.precision, recipe.channels_last)
    title = f"Validation batch after epoch {row['epoch']}: predicted masks (IoU {row['iou']:.4f})"
    figure = out / "figures" / f"val_epoch_{row['epoch']:03d}.png"
    masks = masks_from_logits(logits, NETWORK_ALONE)  # what validation scored
    save_overlay_grid(first_val_images, masks, figure, record.class_names, title=title)


def fit(
    recipe: Recipe,
    root: str | Path,
    out: str | Path,
    device: torch.device,
    log: Callable[[str], None] | None = None,
    context: DistributedContext | None = None,
    resume: bool = False,
) -> CheckpointRecord:
    """Train a recipe, validating each epoch, and write everything into ``out``.

    Writes ``model.safetensors`` (best validation IoU), ``last.safetensors``,
    ``config.json``, ``MODEL_CARD.md``, ``metrics.csv``, ``learning_curve.png`` and one validation overlay
    per epoch under ``figures/``; all atomically, and only on rank 0.

    Args:
        recipe: what to train.
        root: data root (stored in the record, so that ``--resume`` finds it again).
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
        The run's record, as written to ``config.json``.
    """
    context = context or DistributedContext()
    log = (log or partial(print, flush=True)) if context.is_main else (lambda line: None)
    out = Path(out)
    if resume:  # before anything is loaded: a run of another recipe is refused as such
        check_resumable(out, recipe)
    started = time.perf_counter()
    run = build_run(recipe, root, device, context, log)
    if context.is_main:  # once the data has loaded: a missing or damaged data set leaves no empty folder
        out.mkdir(parents=True, exist_ok=True)
    set_float32_precision(device, run.precision)
    setup_seconds = time.perf_counter() - started
    record = CheckpointRecord(
        recipe, data_root=str(Path(root).resolve()), world_size=context.world_size, precision=run.precision
    )
    progress = Progress(config=record.to_json())
    if resume:
        progress = restore_training_state(out / STATE_FILE, run.parts, context)
        record = replace(
            CheckpointRecord.from_json(progress.config), data_root=record.data_root, precision=run.precision
        )
        if progress.epoch >= recipe.epochs:
            log(f"{out} already finished its {recipe.epochs} epochs; nothing to do")
            return record
        log(f"resuming {out} after epoch {progress.epoch} of {recipe.epochs}")
        if context.is_main:  # rows of an epoch killed half-way never reach metrics.csv
            atomic_write_text(out / "metrics.csv", metrics_csv(progress.history))
    processes = f" x {context.world_size} processes" if context.enabled else ""
    precision = run.precision + (" (auto)" if recipe.precision == "auto" else "")
    log(
        f"training {recipe.name}: {recipe.model.describe()} ({count_parameters(run.final_model):,} "
        f"parameters), {run.train_size:,} train / {run.val_size:,} val images, "
        f"{recipe.epochs} epoch{'s' if recipe.epochs > 1 else ''}{', augmented' if recipe.augment else ''}, "
        f"{recipe.loader} loader, {precision} on {device}{processes}"
        + (f" ({torch.get_num_threads()} CPU threads)" if device.type == "cpu" else "")
    )
    first_val_images = next(iter(run.val_batches))[0][:100].to(device)
    history = progress.history
    timings = {"setup": setup_seconds, "train": 0.0, "validate": 0.0, "write": 0.0}
    for epoch in range(progress.epoch + 1, recipe.epochs + 1):
        row, val = run_epoch(run, recipe, epoch, device, context, log)
        history.append(row)
        log(format_epoch(row, recipe.epochs))
        timings["train"] += row["train_seconds"]
        timings["validate"] += row["seconds"] - row["train_seconds"]
        started = time.perf_counter()
        record.timings = {key: round(value, 3) for key, value in timings.items()}
        if context.is_main:
            write_epoch_files(out, run, record, history, val, first_val_images)
        # Last, in one file: the point a resumed run continues from.
        best_iou = (record.best or {}).get("val", {}).get("iou") or -1.0
        save_training_state(out / STATE_FILE, run.parts, Progress(epoch, history, best_iou, record.to_json()), context)
        barrier(context)  # the other ranks wait while rank 0 writes
        timings["write"] += time.perf_counter() - started
    if context.is_main:
        started = time.perf_counter()
        save_learning_curve(history, out / "learning_curve.png")
        timings["write"] += time.perf_counter() - started
        record.timings = {key: round(value, 3) for key, value in timings.items()}
        write_record(out, record)  # with the whole run's timings
    return record
