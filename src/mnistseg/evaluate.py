"""Stage 6: how good is a trained model? Counts and scores on a held-out split.

:func:`evaluate` is the loop shared by validation during training and by the test-set
evaluation of ``mnistseg evaluate``: logits, loss, ``argmax`` to a mask, one confusion
count per batch, summed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mnistseg.checkpoint import WEIGHTS_FILE
from mnistseg.data import BatchedLoader, load_arrays, masks_from_images, split_batches
from mnistseg.device import set_float32_precision
from mnistseg.distributed import DistributedContext, all_reduce_sum, gather_interleaved
from mnistseg.figures import save_confusion_matrix, save_hardest_images, save_overlay_grid
from mnistseg.files import atomic_write_json
from mnistseg.inference import load_for_inference, predict_logits
from mnistseg.metrics import confusion_matrix, per_image_counts, summarize
from mnistseg.model_card import write_model_card
from mnistseg.postprocess import NETWORK_ALONE, InferencePolicy, masks_from_logits

# Images per evaluation batch: small enough that a batch's feature maps stay near the cache. In native
# bf16 the fast model's loop runs as fast at 250 as at 1,000; in float32 (an AVX2-only CPU) faster in
# exploratory runs (benchmarks/time_to_quality.py times each size on the class it runs on).
EVAL_BATCH_SIZE = 250
HARDEST_COUNT = 12  # images in hardest_test_digits.png


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` counted over a split.

    Attributes:
        loss: mean cross-entropy per pixel.
        confusion: int64 ``[C, C]``; ``[t, p]`` counts pixels of true class t predicted p.
        per_image: int64 ``[N, 3]``: TP, FP, FN of each image, in the split's order.
    """

    loss: float
    confusion: Tensor
    per_image: Tensor


@torch.inference_mode()  # no autograd bookkeeping: faster and lighter than no_grad
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = False,
    policy: InferencePolicy = NETWORK_ALONE,
    context: DistributedContext | None = None,
) -> Evaluation:
    """Mean cross-entropy, the summed confusion matrix and per-image counts over a split.

    Args:
        model: the network; put in eval mode here (BatchNorm uses its running stats).
        batches: ``(images float [B, 1, H, W], masks int64 [B, H, W])`` pairs.
        num_classes: classes, background included.
        device: where the model is.
        precision: "fp32", "bf16" or "fp16" autocast.
        channels_last: feed the model NHWC tensors.
        policy: how the logits become the masks counted (test-time shifts, the vote:
            :func:`~mnistseg.postprocess.masks_from_logits`); the loss is the logits'. The
            default is the network alone, as validation scores it.
        context: under torchrun, each rank counts its shard and the sums are all-reduced
            (the per-image rows gathered), so every rank returns those of the whole split.

    Returns:
        An :class:`Evaluation`, its tensors on the CPU.
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_and_pixels = torch.zeros(3, dtype=torch.float64, device=device)  # (summed loss, pixels, images)
    per_image = []
    for images, masks in batches:
        images, masks = images.to(device, non_blocking=True), masks.to(device, non_blocking=True)
        logits = predict_logits(model, images, precision, channels_last, policy.tta)  # (B, C, H, W)
        loss_and_pixels[0] += criterion(logits, masks)  # stays on the device: no sync per batch
        loss_and_pixels[1] += masks.numel()
        loss_and_pixels[2] += len(masks)
        predicted = masks_from_logits(logits, policy)  # (B, H, W)
        confusion += confusion_matrix(predicted, masks, num_classes)
        per_image.append(per_image_counts(predicted, masks))
    if loss_and_pixels[1] == 0:
        raise ValueError("evaluate() was given no batches")
    rows = torch.cat(per_image)
    if context is not None:
        all_reduce_sum(confusion, context)
        all_reduce_sum(loss_and_pixels, context)
        rows = gather_interleaved(rows, int(loss_and_pixels[2].item()), context)
    return Evaluation((loss_and_pixels[0] / loss_and_pixels[1]).item(), confusion.cpu(), rows.cpu())


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
    precision: str = "auto",
    vote: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint on the full test split and write its JSON summary and figure.

    Args:
        checkpoint: folder written by ``mnistseg train``.
        root: data root.
        device: where to run.
        json_path: summary file (default ``<checkpoint>/test_metrics.json``).
        figure_path: overlay grid of the first 100 test images with predicted masks, wrong
            pixels white (default ``<checkpoint>/test_overlay.png``). Beside it go
            ``confusion_matrix.png`` (11x11, row-normalised) and ``hardest_test_digits.png``
            (the images with the lowest IoU, truth above prediction).
        batch_size: images per forward pass.
        tta: test-time shift averaging; None takes the recipe's choice from config.json.
        vote: "none", "region" or "parts" (:mod:`mnistseg.postprocess`); None takes the recipe's.
        context: under torchrun, each rank evaluates its shard and only rank 0 writes.
        precision: "fp32", "bf16" or "fp16", or "auto": the fastest on this device, whatever
            the checkpoint trained in (:func:`mnistseg.device.resolve_precision`).
        log: told first what runs, e.g. ``"evaluating runs/fast (PyTorch, cpu, bf16, region vote)"``.

    Returns:
        The summary: ``tp``, ``fp``, ``fn``, ``iou``, ``dice``, ``per_class``, plus ``loss``,
        ``images``, ``checkpoint``, how it ran (``precision``, ``tta``, ``vote``), the full
        ``confusion`` (``[t][p]``: pixels of true class t predicted p) and the
        ``hardest_images`` (``index`` in the test split and ``iou``).
    """
    checkpoint = Path(checkpoint)
    model = load_for_inference(checkpoint, "torch", device, tta, precision, vote)
    if log is not None:
        log(f"evaluating {model.describe()}")
    set_float32_precision(model.device, model.precision)
    record = model.record
    images, labels = load_arrays(root, train=False, dataset=record.dataset)
    context = context or DistributedContext()
    batches = split_batches(record.dataset, images, labels, "test", batch_size, record.threshold, device=model.device,
                            rank=context.rank, world_size=context.world_size)  # fmt: skip
    result = evaluate(
        model.network, batches, len(record.class_names), model.device, model.precision, model.channels_last,
        policy=model.policy, context=context,
    )  # fmt: skip
    summary = summarize(result.confusion, record.class_names)
    summary.update(loss=result.loss, images=len(batches.labels), checkpoint=str(checkpoint), precision=model.precision,
                   tta=model.tta, vote=model.policy.vote)  # fmt: skip
    order = hardest_images(result.per_image, HARDEST_COUNT)
    summary["confusion"] = result.confusion.tolist()
    summary["hardest_images"] = [
        {"index": index, "iou": image_iou(result.per_image[index])} for index in order.tolist()
    ]  # fmt: skip
    if not context.is_main:
        return summary
    atomic_write_json(json_path or checkpoint / "test_metrics.json", summary)
    if model.record is not None and (checkpoint / WEIGHTS_FILE).is_file():
        write_model_card(checkpoint, model.record, summary)  # now with the test figures

    figure_path = Path(figure_path or checkpoint / "test_overlay.png")
    if context.enabled:  # rank 0 holds every world_size-th image; the figures index the whole split
        batches = split_batches(record.dataset, images, labels, "test", batch_size, record.threshold,
                                device=model.device)  # fmt: skip
    first = torch.arange(min(100, len(batches.labels)))
    first_images, first_masks = split_images_and_masks(batches, first, record.threshold)
    predicted = model.masks(first_images).cpu()
    errors = int((predicted != first_masks).sum())
    save_overlay_grid(
        first_images, predicted, figure_path, record.class_names, truth=first_masks,
        title=f"The first 100 test images, predicted: {errors} pixels (white) differ from the truth",
    )  # fmt: skip
    save_confusion_matrix(
        result.confusion, record.class_names, figure_path.parent / "confusion_matrix.png",
        title=f"Test pixels of each true class, % by predicted class ({len(batches.labels):,} images)",
    )  # fmt: skip
    hard_images, hard_masks = split_images_and_masks(batches, order, record.threshold)
    hard_predicted = model.masks(hard_images).cpu()
    captions = [
        f"#{row['index']} IoU {row['iou']:.2f}\nreads {record.class_names[majority_class(mask)]}"
        for row, mask in zip(summary["hardest_images"], hard_predicted, strict=True)
    ]
    save_hardest_images(
        hard_images, hard_masks, hard_predicted, captions, figure_path.parent / "hardest_test_digits.png",
        record.class_names, title=f"The {len(order)} test images with the lowest IoU: truth above, prediction below",
    )  # fmt: skip
    return summary


def majority_class(mask: Tensor) -> int:
    """The foreground class most pixels of an ``[H, W]`` mask have (0 if it has none)."""
    foreground = mask[mask > 0]
    return int(foreground.mode().values) if foreground.numel() else 0


def image_iou(counts: Tensor) -> float:
    """IoU of one image's ``(tp, fp, fn)``; 1.0 when it has no foreground and predicts none."""
    tp, fp, fn = (int(value) for value in counts)
    return tp / (tp + fp + fn) if tp + fp + fn else 1.0


def hardest_images(per_image: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` images with the lowest IoU, lowest first (ties: lower index first).

    Args:
        per_image: int64 ``[N, 3]`` TP, FP, FN per image.
    """
    tp, fp, fn = per_image.double().unbind(dim=1)
    total = tp + fp + fn
    iou = torch.where(total > 0, tp / total.clamp(min=1), torch.ones_like(tp))
    return torch.sort(iou, stable=True).indices[:count]


def split_images_and_masks(batches: BatchedLoader, index: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """Some images of an evaluation split and their true masks.

    Returns:
        ``(images float [K, 1, H, W] in 0..1, masks int64 [K, H, W])`` on the CPU.
    """
    images = batches.images[index].float().cpu() / 255
    if batches.masks is not None:  # scenes carry their masks
        return images, batches.masks[index].cpu()
    return images, masks_from_images(images, batches.labels[index].cpu(), threshold)
