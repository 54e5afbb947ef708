"""Stage 3: counting how good a predicted mask is.

Counting and scoring are kept apart, as in segmentation_models_pytorch: counts are summed
over a whole data set (pixel areas add up across batches), and scores are pure functions
of the summed counts. Only the 10 foreground classes count; background (class 0) is
dropped, as in the reference.

For a foreground class c, over all pixels:

* TP: target c and predicted c;
* FP: predicted c, target something else;
* FN: target c, predicted something else.

IoU = TP / (TP + FP + FN), Dice = 2 TP / (2 TP + FP + FN). A class with no pixels in the
target nor in the prediction has 0 / 0: its score is NaN ("not measured"), not 0 (which
would mean "all wrong") nor 1. Overall scores use the counts summed over the classes
(micro average), so they are NaN only if there is no foreground anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mnistseg.postprocess import region_majorities, vote_by_region


def _check_masks(predicted: Tensor, target: Tensor, num_classes: int) -> None:
    if predicted.shape != target.shape:
        raise ValueError(f"predicted and target masks differ in shape: {list(predicted.shape)} vs {list(target.shape)}")
    for name, mask in (("predicted", predicted), ("target", target)):
        if mask.dtype.is_floating_point or mask.dtype == torch.bool:
            raise ValueError(f"{name} mask must hold integer class ids, got {mask.dtype} (take argmax of logits first)")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")


def confusion_matrix(predicted: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Count every (target class, predicted class) pair in one ``bincount``.

    Args:
        predicted: int ``[N, H, W]`` (any shape) predicted class ids.
        target: int, same shape, true class ids.
        num_classes: classes, background included.

    Returns:
        int64 ``[num_classes, num_classes]``; entry ``[t, p]`` counts pixels of true
        class ``t`` predicted as ``p``. Pixels with an id outside ``0..num_classes-1``
        in either mask raise ``ValueError``.
    """
    _check_masks(predicted, target, num_classes)
    predicted = predicted.reshape(-1).to(torch.int64)
    target = target.reshape(-1).to(torch.int64)
    if predicted.numel() and (
        min(predicted.min().item(), target.min().item()) < 0
        or max(predicted.max().item(), target.max().item()) >= num_classes
    ):
        raise ValueError(f"class ids must be in 0..{num_classes - 1}")
    pair_index = num_classes * target + predicted  # one id per (target, predicted) pair
    counts = torch.bincount(pair_index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def foreground_counts(confusion: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-class TP, FP, FN of the foreground classes from a confusion matrix.

    Args:
        confusion: int64 ``[C, C]`` from :func:`confusion_matrix` (rows: target).

    Returns:
        ``(tp, fp, fn)``, each int64 ``[C - 1]`` for classes 1..C-1.
    """
    true_positive = confusion.diagonal()
    predicted_total = confusion.sum(dim=0)  # column sums: pixels predicted as each class
    target_total = confusion.sum(dim=1)  # row sums: pixels truly of each class
    return (
        true_positive[1:],
        (predicted_total - true_positive)[1:],
        (target_total - true_positive)[1:],
    )


def iou_score(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """IoU = TP / (TP + FP + FN), elementwise, float64; NaN where the denominator is 0."""
    tp, fp, fn = (torch.as_tensor(value, dtype=torch.float64) for value in (tp, fp, fn))
    return tp / (tp + fp + fn)  # 0 / 0 is NaN in floating point: exactly the rule we want


def dice_score(tp: Tensor, fp: Tensor, fn: Tensor) -> Tensor:
    """Dice = 2 TP / (2 TP + FP + FN), elementwise, float64; NaN where the denominator is 0."""
    tp, fp, fn = (torch.as_tensor(value, dtype=torch.float64) for value in (tp, fp, fn))
    return 2 * tp / (2 * tp + fp + fn)


class MaskScoring:
    """TP, FP and FN pixel areas of a batch, over the foreground classes (the reference's metric).

    The reference one-hot encodes both masks, drops the background channel and counts
    with logical and/not; this gives the same numbers from one confusion count.

    Args:
        num_classes: classes, background included (11 for MNIST).

    Example:
        >>> scoring = MaskScoring(num_classes=11)
        >>> tp, fp, fn = scoring(logits.argmax(dim=1), masks)
    """

    def __init__(self, num_classes: int) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes

    def __call__(self, predicted_masks: Tensor, target_masks: Tensor) -> tuple[int, int, int]:
        """Count a batch.

        Args:
            predicted_masks: int64 ``[N, H, W]`` class ids.
            target_masks: int64 ``[N, H, W]`` class ids.

        Returns:
            ``(tp, fp, fn)`` summed over the foreground classes, as Python ints.
        """
        tp, fp, fn = foreground_counts(confusion_matrix(predicted_masks, target_masks, self.num_classes))
        return int(tp.sum()), int(fp.sum()), int(fn.sum())


def _number_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def summarize(confusion: Tensor, names: Sequence[str]) -> dict[str, Any]:
    """Overall and per-class counts and scores from a summed confusion matrix.

    NaN scores are written as ``None`` (JSON ``null``), as JSON has no NaN.

    Returns:
        ``{"tp", "fp", "fn", "iou", "dice", "per_class": {name: {"tp", "fp", "fn",
        "iou", "dice", "target_pixels", "predicted_pixels"}}}``.
    """
    if len(names) != confusion.shape[0]:
        raise ValueError(f"need {confusion.shape[0]} class names, got {len(names)}")
    tp, fp, fn = foreground_counts(confusion)
    total_tp, total_fp, total_fn = tp.sum(), fp.sum(), fn.sum()
    per_class_iou, per_class_dice = iou_score(tp, fp, fn), dice_score(tp, fp, fn)
    per_class = {}
    for index, name in enumerate(names[1:]):
        per_class[name] = {
            "tp": int(tp[index]),
            "fp": int(fp[index]),
            "fn": int(fn[index]),
            "iou": _number_or_none(float(per_class_iou[index])),
            "dice": _number_or_none(float(per_class_dice[index])),
            "target_pixels": int(tp[index] + fn[index]),
            "predicted_pixels": int(tp[index] + fp[index]),
        }
    return {
        "tp": int(total_tp),
        "fp": int(total_fp),
        "fn": int(total_fn),
        "iou": _number_or_none(float(iou_score(total_tp, total_fp, total_fn))),
        "dice": _number_or_none(float(dice_score(total_tp, total_fp, total_fn))),
        "per_class": per_class,
    }


def per_image_counts(predicted: Tensor, target: Tensor) -> Tensor:
    """TP, FP and FN over the foreground classes, one row per image.

    Args:
        predicted: int ``[N, H, W]`` predicted class ids (0 is background).
        target: int ``[N, H, W]`` true class ids.

    Returns:
        int64 ``[N, 3]``: ``(tp, fp, fn)`` of each image; the rows sum to the totals of
        :func:`foreground_counts`.
    """
    if predicted.shape != target.shape or predicted.dim() != 3:
        raise ValueError(
            f"expected two [N, H, W] masks of one shape, got {list(predicted.shape)} and {list(target.shape)}"
        )
    same = predicted == target
    tp = (same & (target > 0)).sum(dim=(1, 2))
    fp = (~same & (predicted > 0)).sum(dim=(1, 2))
    fn = (~same & (target > 0)).sum(dim=(1, 2))
    return torch.stack([tp, fp, fn], dim=1).to(torch.int64)


def error_breakdown(
    images: Tensor, target: Tensor, predicted: Tensor, threshold: float, margin: float = 0.05
) -> dict[str, int | float]:
    """Where the FP and FN pixels come from, for single-digit images such as MNIST.

    Every wrong pixel is one of two kinds: foreground and background disagree (one FP or
    one FN), or a foreground pixel gets the wrong digit (one FP *and* one FN). So
    ``fp + fn == fg_bg + 2 * wrong_digit``.

    Args:
        images: float ``[N, 1, H, W]`` or ``[N, H, W]`` intensities in 0..1.
        target: int ``[N, H, W]`` true class ids (one digit per image).
        predicted: int ``[N, H, W]`` predicted class ids.
        threshold: the data set's foreground threshold.
        margin: fg/bg errors with an intensity within this of ``threshold`` are "near".

    Returns:
        ``tp``, ``fp``, ``fn``, ``iou``; ``fg_bg`` and ``fg_bg_near_threshold`` (pixels); ``wrong_digit``
        (pixels); ``misread_images`` (the majority of the predicted digit pixels on the
        true digit is another digit, or there are none) and ``misread_pixels`` (their
        wrong-digit pixels); ``split_regions`` (predicted regions holding two or more
        digits) and ``split_minority_pixels`` (pixels outvoted in them); and ``tp``,
        ``fp``, ``fn`` and ``iou`` after :func:`vote_by_region`.
    """
    images = images.reshape(target.shape).float()
    true_fg, predicted_fg = target > 0, predicted > 0
    fg_bg = true_fg != predicted_fg
    wrong_digit = true_fg & predicted_fg & (predicted != target)
    counts = per_image_counts(predicted, target).sum(dim=0)

    num_classes = int(max(target.max(), predicted.max())) + 1
    on_digit = torch.where(true_fg & predicted_fg, predicted, 0).reshape(len(target), -1)
    per_image_votes = torch.zeros(len(target), num_classes, dtype=torch.int64).scatter_add_(
        1, on_digit.cpu(), torch.ones_like(on_digit, dtype=torch.int64).cpu()
    )
    per_image_votes[:, 0] = 0
    true_class = target.reshape(len(target), -1).max(dim=1).values.cpu()
    misread = (per_image_votes.argmax(dim=1) != true_class) | (per_image_votes.sum(dim=1) == 0)
    misread &= true_class > 0  # an image with no digit pixels cannot be misread

    _, votes, winners = region_majorities(predicted, num_classes)
    classes_per_region = (votes[1:] > 0).sum(axis=1)
    minority = votes[1:].sum(axis=1) - votes[1:][np.arange(len(winners) - 1), winners[1:]]

    voted = per_image_counts(vote_by_region(predicted, num_classes), target).sum(dim=0)
    return {
        "tp": int(counts[0]),
        "fp": int(counts[1]),
        "fn": int(counts[2]),
        "iou": float(iou_score(counts[0], counts[1], counts[2])),
        "fg_bg": int(fg_bg.sum()),
        "fg_bg_near_threshold": int((fg_bg & ((images - threshold).abs() <= margin)).sum()),
        "wrong_digit": int(wrong_digit.sum()),
        "misread_images": int(misread.sum()),
        "misread_pixels": int(wrong_digit.reshape(len(target), -1).sum(dim=1).cpu()[misread].sum()),
        "split_regions": int((classes_per_region >= 2).sum()),
        "split_minority_pixels": int(minority.sum()),
        "voted_tp": int(voted[0]),
        "voted_fp": int(voted[1]),
        "voted_fn": int(voted[2]),
        "voted_iou": float(iou_score(voted[0], voted[1], voted[2])),
    }
