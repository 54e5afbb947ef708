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

import torch
from torch import Tensor


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
