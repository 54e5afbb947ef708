"""Property-based tests (hypothesis): metric invariants, and predict on any image."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mnistseg.metrics import confusion_matrix, dice_score, foreground_counts, iou_score, summarize
from mnistseg.model import SimpleUNet
from mnistseg.predict import predict

NAMES = ["background", *map(str, range(10))]


@st.composite
def mask_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Predicted and target masks [N, H, W] with ids 0..10, and a random way to cut N into batches."""
    count, height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    highest = draw(st.integers(0, 10))  # sometimes only a few classes occur at all
    generator = torch.Generator().manual_seed(seed)
    predicted = torch.randint(0, highest + 1, (count, height, width), generator=generator)
    target = torch.randint(0, highest + 1, (count, height, width), generator=generator)
    cuts = sorted(draw(st.lists(st.integers(1, max(count - 1, 1)), max_size=3, unique=True)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, count], strict=True) if b > a]
    return predicted, target, sizes


@settings(max_examples=150, deadline=None)
@given(mask_pairs())
def test_counts_are_invariant_to_batching(pair: tuple[torch.Tensor, torch.Tensor, list[int]]) -> None:
    predicted, target, sizes = pair
    whole = confusion_matrix(predicted, target, 11)
    batched = sum(confusion_matrix(p, t, 11) for p, t in zip(predicted.split(sizes), target.split(sizes), strict=True))
    assert torch.equal(whole, batched)
    assert int(whole.sum()) == predicted.numel()


@settings(max_examples=150, deadline=None)
@given(mask_pairs())
def test_scores_are_in_the_unit_interval_or_nan_for_empty_classes(
    pair: tuple[torch.Tensor, torch.Tensor, list[int]],
) -> None:
    predicted, target, _ = pair
    tp, fp, fn = foreground_counts(confusion_matrix(predicted, target, 11))
    for scores in (iou_score(tp, fp, fn), dice_score(tp, fp, fn)):
        for value, present in zip(scores.tolist(), (tp + fp + fn).tolist(), strict=True):
            if present:
                assert 0.0 <= value <= 1.0
            else:
                assert math.isnan(value)  # the documented rule: no pixels, no score
    summary = summarize(confusion_matrix(predicted, target, 11), NAMES)
    assert summary["tp"] + summary["fn"] == int((target > 0).sum())
    assert summary["tp"] + summary["fp"] == int((predicted > 0).sum())
    if summary["iou"] is not None:
        assert summary["iou"] <= summary["dice"] <= 1.0  # Dice = 2 IoU / (1 + IoU) >= IoU


@st.composite
def any_image(draw: st.DrawFn) -> np.ndarray:
    """An array of any small size, 2-D or with 1, 3 or 4 channels, of an integer or float dtype."""
    height, width = draw(st.integers(1, 90)), draw(st.integers(1, 90))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]))
    shape = (height, width) if channels is None else (height, width, channels)
    generator = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    high = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (generator.random(shape) * high).astype(dtype)


@settings(max_examples=60, deadline=None)
@given(any_image())
def test_predict_returns_a_mask_of_the_inputs_size(image: np.ndarray) -> None:
    torch.manual_seed(0)
    model = SimpleUNet(base_width=2)  # untrained: the property is about shapes and types
    mask = predict(image, model)
    assert mask.shape == image.shape[:2] and mask.dtype == torch.int64
    assert 0 <= int(mask.min()) and int(mask.max()) <= 10
