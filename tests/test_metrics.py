"""Stage 3: counts derived by hand, the NaN rule, and agreement with independent code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_stat_scores

from mnistseg import MaskScoring
from mnistseg.metrics import confusion_matrix, dice_score, foreground_counts, iou_score, summarize

# Two 2x2 masks, 3 classes (0 = background, 1 and 2 foreground):
#   target     predicted
#   0 1        1 1
#   2 2        2 0
TARGET = torch.tensor([[[0, 1], [2, 2]]])
PREDICTED = torch.tensor([[[1, 1], [2, 0]]])


def test_confusion_matrix_by_hand() -> None:
    # rows = target, columns = predicted:
    #   target 0: predicted 1 once (top left)            -> [0, 1, 0]
    #   target 1: predicted 1 once (top right)           -> [0, 1, 0]
    #   target 2: predicted 2 once, 0 once (bottom row)  -> [1, 0, 1]
    assert confusion_matrix(PREDICTED, TARGET, 3).tolist() == [[0, 1, 0], [0, 1, 0], [1, 0, 1]]


def test_mask_scoring_by_hand() -> None:
    # class 1: TP 1 (top right); FP 1 (top left: predicted 1, truly 0); FN 0.
    # class 2: TP 1 (bottom left); FP 0; FN 1 (bottom right: truly 2, predicted 0).
    # Background is not counted. Totals: TP 2, FP 1, FN 1.
    assert MaskScoring(3)(PREDICTED, TARGET) == (2, 1, 1)
    tp, fp, fn = foreground_counts(confusion_matrix(PREDICTED, TARGET, 3))
    assert (tp.tolist(), fp.tolist(), fn.tolist()) == ([1, 1], [1, 0], [0, 1])
    # IoU = 2 / (2 + 1 + 1) = 0.5; Dice = 2*2 / (2*2 + 1 + 1) = 2/3.
    summary = summarize(confusion_matrix(PREDICTED, TARGET, 3), ["background", "a", "b"])
    assert summary["iou"] == 0.5 and summary["dice"] == pytest.approx(2 / 3)
    # Per class: a has IoU 1/2, Dice 2/3; b has IoU 1/2, Dice 2/3.
    assert summary["per_class"]["a"]["iou"] == 0.5 and summary["per_class"]["b"]["dice"] == pytest.approx(2 / 3)
    assert summary["per_class"]["b"]["target_pixels"] == 2 and summary["per_class"]["b"]["predicted_pixels"] == 1


def test_a_perfect_and_an_all_wrong_prediction() -> None:
    assert MaskScoring(3)(TARGET, TARGET) == (3, 0, 0)  # three foreground pixels, all right
    everything_background = torch.zeros_like(TARGET)
    assert MaskScoring(3)(everything_background, TARGET) == (0, 0, 3)
    assert iou_score(torch.tensor(0), torch.tensor(0), torch.tensor(3)).item() == 0.0


def test_a_class_with_no_pixels_scores_nan_not_zero() -> None:
    # Class 2 appears in neither mask: 0 / 0. Class 1 is right everywhere.
    target = torch.tensor([[[0, 1]]])
    tp, fp, fn = foreground_counts(confusion_matrix(target, target, 3))
    iou, dice = iou_score(tp, fp, fn), dice_score(tp, fp, fn)
    assert iou[0].item() == 1.0 and math.isnan(iou[1].item()) and math.isnan(dice[1].item())
    summary = summarize(confusion_matrix(target, target, 3), ["background", "a", "b"])
    assert summary["per_class"]["b"]["iou"] is None  # JSON null
    assert summary["iou"] == 1.0  # the overall score sums counts first, so it stays defined
    background_only = torch.zeros(1, 2, 2, dtype=torch.int64)
    empty = summarize(confusion_matrix(background_only, background_only, 3), ["background", "a", "b"])
    assert empty["iou"] is None and empty["dice"] is None


def reference_counts(predicted: torch.Tensor, target: torch.Tensor, num_classes: int) -> tuple[int, int, int]:
    """The reference's definition, literally: one-hot, drop background, logical and/not."""
    target_hot = F.one_hot(target, num_classes)[..., 1:].bool()
    predicted_hot = F.one_hot(predicted, num_classes)[..., 1:].bool()
    return (
        int((target_hot & predicted_hot).sum()),
        int((~target_hot & predicted_hot).sum()),
        int((target_hot & ~predicted_hot).sum()),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_the_reference_definition_and_torchmetrics(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 11, (8, 28, 28), generator=generator)
    predicted = torch.where(torch.rand(8, 28, 28, generator=generator) < 0.7, target,
                            torch.randint(0, 11, (8, 28, 28), generator=generator))  # fmt: skip
    assert MaskScoring(11)(predicted, target) == reference_counts(predicted, target, 11)
    stats = multiclass_stat_scores(predicted.flatten(), target.flatten(), num_classes=11, average=None)
    tp, fp, fn = foreground_counts(confusion_matrix(predicted, target, 11))
    assert torch.equal(tp, stats[1:, 0]) and torch.equal(fp, stats[1:, 1]) and torch.equal(fn, stats[1:, 3])


def test_counts_do_not_depend_on_batching() -> None:
    generator = torch.Generator().manual_seed(7)
    target = torch.randint(0, 11, (30, 28, 28), generator=generator)
    predicted = torch.randint(0, 11, (30, 28, 28), generator=generator)
    whole = confusion_matrix(predicted, target, 11)
    in_batches = sum(confusion_matrix(p, t, 11) for p, t in zip(predicted.split(7), target.split(7), strict=True))
    assert torch.equal(whole, in_batches)


def test_bad_masks_are_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.int64), torch.zeros(1, 2, 3, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="argmax"):
        confusion_matrix(torch.zeros(1, 11, 2, 2), torch.zeros(1, 11, 2, 2), 11)
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(torch.full((1, 2, 2), 11), torch.zeros(1, 2, 2, dtype=torch.int64), 11)


def test_the_error_breakdown_on_a_hand_counted_example() -> None:
    from mnistseg.metrics import error_breakdown, per_image_counts
    from mnistseg.postprocess import vote_by_region

    # A "2" (class 3) of four pixels. The prediction: one pixel right, three given "3"
    # (class 4), a background pixel at intensity 0.18 given 2 (near the 0.2 threshold),
    # and a speck at 0.5 given 4 (class 5), far from the digit.
    target = torch.tensor([[[0, 3, 3, 0], [0, 3, 3, 0], [0, 0, 0, 0], [0, 0, 0, 0]]])
    predicted = torch.tensor([[[0, 3, 4, 0], [3, 4, 4, 0], [0, 0, 0, 0], [0, 0, 0, 5]]])
    images = torch.tensor([[[0, 0.9, 0.9, 0], [0.18, 0.9, 0.9, 0], [0, 0, 0, 0], [0, 0, 0, 0.5]]])
    assert per_image_counts(predicted, target).tolist() == [[1, 5, 3]]
    # The 5-pixel region votes 4 (three 4s against two 3s); the speck is its own region.
    assert vote_by_region(predicted, 11).tolist() == [[[0, 4, 4, 0], [4, 4, 4, 0], [0, 0, 0, 0], [0, 0, 0, 5]]]
    assert error_breakdown(images, target, predicted, threshold=0.2) == {
        "tp": 1, "fp": 5, "fn": 3, "iou": 1 / 9,  # fp + fn = fg_bg + 2 * wrong_digit
        "fg_bg": 2, "fg_bg_near_threshold": 1, "wrong_digit": 3,
        "misread_images": 1, "misread_pixels": 3,  # most of the digit reads 3, not 2
        "split_regions": 1, "split_minority_pixels": 2,
        "voted_tp": 0, "voted_fp": 6, "voted_fn": 4, "voted_iou": 0.0,
    }  # fmt: skip


def test_per_image_counts_sum_to_the_confusion_totals() -> None:
    from mnistseg.metrics import per_image_counts

    generator = torch.Generator().manual_seed(0)
    predicted = torch.randint(0, 11, (5, 6, 7), generator=generator)
    target = torch.randint(0, 11, (5, 6, 7), generator=generator)
    tp, fp, fn = foreground_counts(confusion_matrix(predicted, target, 11))
    assert per_image_counts(predicted, target).sum(dim=0).tolist() == [int(tp.sum()), int(fp.sum()), int(fn.sum())]
