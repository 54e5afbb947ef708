"""Stage 5: how good is a trained model? Counts and scores on a held-out split.

:func:`evaluate` is the loop shared by validation during training and by the test-set
evaluation of ``mnistseg evaluate``: logits, loss, ``argmax`` to a mask, one confusion
count per batch, summed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistseg.data import DEFAULT_THRESHOLD, BatchedLoader, class_names, load_arrays, masks_from_images
from mnistseg.device import autocast, set_float32_precision
from mnistseg.distributed import DistributedContext, all_reduce_sum
from mnistseg.figures import save_overlay_grid
from mnistseg.metrics import confusion_matrix, summarize
from mnistseg.scenes import TEST_SCENE_SEED, TEST_SCENES, scene_batches
from mnistseg.storage import atomic_write_json, load_model

EVAL_BATCH_SIZE = 1000


# Test-time averaging: the logits of the image and of its copies shifted by one pixel
# (shifted back before averaging). Flips would not do: a flipped 2 is not a 2.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(images: Tensor, dy: int, dx: int) -> Tensor:
    """Move the content of ``[N, C, H, W]`` images ``dy`` pixels down and ``dx`` right, filling with 0."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + height, left : left + width]


def predict_logits(
    model: nn.Module, images: Tensor, precision: str = "fp32", channels_last: bool = False, tta: bool = False
) -> Tensor:
    """Run the model on a batch, returning float32 logits ``[N, C, H, W]``.

    Args:
        model: the network (in eval mode for inference).
        images: float ``[N, 1, H, W]``.
        precision: autocast precision.
        channels_last: feed the model NHWC tensors.
        tta: average the logits over :data:`TTA_SHIFTS` (5 forward passes).
    """
    shifts = TTA_SHIFTS if tta else ((0, 0),)
    total = None
    for dy, dx in shifts:
        shifted = shift_images(images, dy, dx)
        if channels_last:
            shifted = shifted.contiguous(memory_format=torch.channels_last)
        with autocast(images.device, precision):
            logits = shift_images(model(shifted).float(), -dy, -dx)
        total = logits if total is None else total + logits
    return total / len(shifts)


@torch.inference_mode()  # no autograd bookkeeping: faster and lighter than no_grad
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    tta: bool = False,
    context: DistributedContext | None = None,
) -> tuple[float, Tensor]:
    """Mean cross-entropy and the summed confusion matrix over a split.

    Args:
        model: the network; put in eval mode here (BatchNorm uses its running stats).
        batches: ``(images float [B, 1, H, W], masks int64 [B, H, W])`` pairs.
        num_classes: classes, background included.
        device: where the model is.
        precision: "fp32", "bf16" or "fp16" autocast.
        channels_last: feed the model NHWC tensors.
        tta: average logits over 1-pixel shifts (:func:`predict_logits`).
        context: under torchrun, each rank counts its shard and the sums are all-reduced,
            so every rank returns the totals of the whole split.

    Returns:
        ``(mean loss per pixel, confusion int64 [C, C] on the CPU)``.
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_and_pixels = torch.zeros(2, dtype=torch.float64, device=device)  # (summed loss, pixel count)
    for images, masks in batches:
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        logits = predict_logits(model, images, precision, channels_last, tta)  # (B, C, H, W)
        loss_and_pixels[0] += criterion(logits, masks)  # stays on the device: no sync per batch
        loss_and_pixels[1] += masks.numel()
        confusion += confusion_matrix(logits.argmax(dim=1), masks, num_classes)
    if context is not None:
        all_reduce_sum(confusion, context)
        all_reduce_sum(loss_and_pixels, context)
    if loss_and_pixels[1] == 0:
        raise ValueError("evaluate() was given no batches")
    return (loss_and_pixels[0] / loss_and_pixels[1]).item(), confusion.cpu()


def format_table(summary: dict[str, Any]) -> str:
    """A fixed-width text table: one row per class, then the overall counts and scores."""

    def score(value: float | None) -> str:
        return "   nan" if value is None else f"{value:.4f}"

    lines = [f"{'class':<12} {'TP':>10} {'FP':>8} {'FN':>8} {'IoU':>7} {'Dice':>7}"]
    rows = list(summary["per_class"].items()) + [("all", summary)]
    for name, row in rows:
        if name == "all":
            lines.append("-" * len(lines[0]))
        counts = f"{row['tp']:>10,} {row['fp']:>8,} {row['fn']:>8,}"
        lines.append(f"{name:<12} {counts} {score(row['iou']):>7} {score(row['dice']):>7}")
    return "\n".join(lines)


def evaluate_checkpoint(
    checkpoint: str | Path,
    root: str | Path,
    device: torch.device,
    json_path: str | Path | None = None,
    figure_path: str | Path | None = None,
    batch_size: int = EVAL_BATCH_SIZE,
    tta: bool | None = None,
    context: DistributedContext | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on the full test split and write its JSON summary and figure.

    Args:
        checkpoint: folder written by ``mnistseg train``.
        root: data root.
        device: where to run.
        json_path: summary file (default ``<checkpoint>/test_metrics.json``).
        figure_path: overlay grid of the first 100 test images with predicted masks
            (default ``<checkpoint>/test_overlay.png``).
        batch_size: images per forward pass.
        tta: test-time shift averaging; None takes the recipe's choice from config.json.
        context: under torchrun, each rank evaluates its shard and only rank 0 writes.

    Returns:
        The summary: ``tp``, ``fp``, ``fn``, ``iou``, ``dice``, ``per_class``, plus ``loss``,
        ``images`` and ``checkpoint``.
    """
    checkpoint = Path(checkpoint)
    model, config = load_model(checkpoint)
    model.to(device)
    dataset = config.get("dataset", "mnist")
    threshold = float(config.get("threshold", DEFAULT_THRESHOLD))
    names = class_names(dataset)
    images, labels = load_arrays(root, train=False, dataset=dataset)
    context = context or DistributedContext()
    shard = {"device": device, "rank": context.rank, "world_size": context.world_size}
    if dataset == "scenes":  # the fixed test scenes, made from test digits only
        batches = scene_batches(images, labels, TEST_SCENES, TEST_SCENE_SEED, batch_size, threshold, **shard)
    else:
        batches = BatchedLoader(images, labels, batch_size, threshold=threshold, **shard)
    precision = "fp32"  # the published numbers come from full precision: no autocast here
    set_float32_precision(device, precision)
    if tta is None:
        tta = bool(config.get("recipe", {}).get("tta", False))
    loss, confusion = evaluate(model, batches, len(names), device, precision, tta=tta, context=context)
    summary = summarize(confusion, names)
    summary.update(loss=loss, images=len(batches.labels), checkpoint=str(checkpoint), precision=precision, tta=tta)
    if not context.is_main:
        return summary
    atomic_write_json(json_path or checkpoint / "test_metrics.json", summary)

    first_images = batches.images[:100].float() / 255  # (100, 1, H, W), whatever this rank's shard
    if batches.masks is not None:
        first_masks = batches.masks[:100]
    else:
        first_masks = masks_from_images(first_images, batches.labels[:100], threshold)
    with torch.inference_mode():
        predicted = predict_logits(model, first_images, precision, tta=tta).argmax(dim=1)
    errors = int((predicted != first_masks).sum())
    save_overlay_grid(
        first_images,
        predicted,
        figure_path or checkpoint / "test_overlay.png",
        names,
        title=f"The first 100 test images with predicted masks ({errors} pixels differ from the truth)",
    )
    return summary
