"""Stage 6: how good is a trained model? Counts and scores on a held-out split.

:func:`evaluate` is the loop shared by validation during training and by the test-set
evaluation of ``mnistseg evaluate``: logits, loss, ``argmax`` to a mask, one confusion
count per batch, summed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mnistseg.data import load_arrays, masks_from_images, split_batches
from mnistseg.device import set_float32_precision
from mnistseg.distributed import DistributedContext, all_reduce_sum
from mnistseg.figures import save_overlay_grid
from mnistseg.files import atomic_write_json
from mnistseg.inference import load_for_inference, predict_logits
from mnistseg.metrics import confusion_matrix, summarize

EVAL_BATCH_SIZE = 1000


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
    precision: str | None = None,
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
        precision: "fp32", "bf16" or "fp16"; None runs in the precision and memory layout
            the recipe trained in (``fast`` and ``best``: bf16, ``channels_last``).

    Returns:
        The summary: ``tp``, ``fp``, ``fn``, ``iou``, ``dice``, ``per_class``, plus ``loss``,
        ``images`` and ``checkpoint``.
    """
    checkpoint = Path(checkpoint)
    model = load_for_inference(checkpoint, "torch", device, tta, precision)  # as trained, unless told otherwise
    set_float32_precision(model.device, model.precision)
    record = model.record
    images, labels = load_arrays(root, train=False, dataset=record.dataset)
    context = context or DistributedContext()
    batches = split_batches(record.dataset, images, labels, "test", batch_size, record.threshold, device=model.device,
                            rank=context.rank, world_size=context.world_size)  # fmt: skip
    loss, confusion = evaluate(
        model.network, batches, len(record.class_names), model.device, model.precision, model.channels_last,
        tta=model.tta, context=context,
    )  # fmt: skip
    summary = summarize(confusion, record.class_names)
    summary.update(loss=loss, images=len(batches.labels), checkpoint=str(checkpoint), precision=model.precision,
                   tta=model.tta)  # fmt: skip
    if not context.is_main:
        return summary
    atomic_write_json(json_path or checkpoint / "test_metrics.json", summary)

    first_images = batches.images[:100].float() / 255  # (100, 1, H, W), whatever this rank's shard
    if batches.masks is not None:
        first_masks = batches.masks[:100]
    else:
        first_masks = masks_from_images(first_images, batches.labels[:100], record.threshold)
    predicted = model.logits(first_images).argmax(dim=1).cpu()
    errors = int((predicted != first_masks.cpu()).sum())
    save_overlay_grid(
        first_images,
        predicted,
        figure_path or checkpoint / "test_overlay.png",
        record.class_names,
        title=f"The first 100 test images with predicted masks ({errors} pixels differ from the truth)",
    )
    return summary
