"""Stage 5: the evaluation loop and test-time shift averaging."""

from __future__ import annotations

import pytest
import torch

from mnistseg.evaluate import evaluate, format_table
from mnistseg.inference import TTA_SHIFTS, predict_logits, shift_images
from mnistseg.metrics import confusion_matrix, per_image_counts, summarize
from mnistseg.model import SimpleUNet
from mnistseg.postprocess import InferencePolicy, classes_of, vote_by_region


def test_classes_of_is_the_argmax_in_either_layout_ties_to_the_first() -> None:
    logits = torch.zeros(2, 4, 3, 3)
    logits[0, 2, 0, 0] = 1.0  # one clear winner
    logits[1, 1] = logits[1, 3] = 5.0  # a tie everywhere in image 1: the first class, 1
    expected = torch.zeros(2, 3, 3, dtype=torch.int64)
    expected[0, 0, 0], expected[1] = 2, 1
    for layout in (torch.contiguous_format, torch.channels_last):
        assert torch.equal(classes_of(logits.contiguous(memory_format=layout)), expected)
    random = torch.randn(5, 11, 28, 28)
    assert torch.equal(classes_of(random), random.argmax(dim=1))


def test_shift_images_moves_content_and_fills_with_zero() -> None:
    image = torch.zeros(1, 1, 3, 3)
    image[0, 0, 1, 1] = 1.0  # the centre pixel
    down_right = shift_images(image, 1, 1)
    assert down_right[0, 0].nonzero().tolist() == [[2, 2]]
    up_left = shift_images(image, -1, -1)
    assert up_left[0, 0].nonzero().tolist() == [[0, 0]]
    edge = torch.ones(1, 1, 3, 3)
    assert shift_images(edge, 0, 1)[0, 0].tolist() == [[0, 1, 1]] * 3  # the new left column is empty


def test_tta_of_a_shift_invariant_model_changes_nothing_inside() -> None:
    # A 1x1 conv is shift-equivariant: averaging over shifts must give its plain logits
    # everywhere except the border pixels that a shift empties.
    model = torch.nn.Conv2d(1, 3, 1).eval()
    images = torch.rand(2, 1, 8, 8)
    with torch.inference_mode():
        plain = predict_logits(model, images)
        averaged = predict_logits(model, images, tta=True)
    torch.testing.assert_close(averaged[..., 1:-1, 1:-1], plain[..., 1:-1, 1:-1])


def test_tta_averages_the_five_shifted_passes_by_hand() -> None:
    # With the identity as the "model", a pass shifts the image, then its logits back: a pixel
    # survives unless the shift pushed it off the image. The image and its 4 one-pixel shifts
    # each lose one edge row or column, so on an image of ones the average is 1 inside, 4/5 on
    # an edge (one of the five passes lost it) and 3/5 in a corner (two passes lost it).
    averaged = predict_logits(torch.nn.Identity(), torch.ones(1, 1, 4, 5), tta=True)[0, 0]
    expected = torch.tensor([
        [3, 4, 4, 4, 3],
        [4, 5, 5, 5, 4],
        [4, 5, 5, 5, 4],
        [3, 4, 4, 4, 3],
    ]) / 5  # fmt: skip
    torch.testing.assert_close(averaged, expected)
    assert len(TTA_SHIFTS) == 5


def test_evaluate_sums_batches_like_one_big_count() -> None:
    torch.manual_seed(0)
    model = SimpleUNet(base_width=4)
    images = torch.rand(12, 1, 28, 28)
    masks = torch.randint(0, 11, (12, 28, 28))
    batches = list(zip(images.split(5), masks.split(5), strict=True))
    result = evaluate(model, batches, 11, torch.device("cpu"))
    loss, confusion = result.loss, result.confusion
    with torch.inference_mode():
        logits = model.eval()(images)
    assert torch.equal(confusion, confusion_matrix(logits.argmax(1), masks, 11))
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, masks).item(), rel=1e-5)
    assert torch.equal(result.per_image, per_image_counts(logits.argmax(1), masks))  # in the images' order
    voted = evaluate(model, batches, 11, torch.device("cpu"), policy=InferencePolicy(vote="region"))
    assert torch.equal(voted.confusion, confusion_matrix(vote_by_region(logits.argmax(1), 11), masks, 11))
    assert voted.loss == result.loss  # the vote changes the masks, not the logits
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [], 11, torch.device("cpu"))


def test_format_table_lists_every_class_and_the_total() -> None:
    target = torch.tensor([[[0, 1], [2, 2]]])
    table = format_table(summarize(confusion_matrix(target, target, 3), ["background", "a", "b"]))
    lines = table.splitlines()
    assert lines[1].split()[:4] == ["a", "1", "0", "0"] and lines[-1].split()[:4] == ["all", "3", "0", "0"]


def test_the_hardest_images_are_those_with_the_lowest_iou() -> None:
    from mnistseg.evaluate import hardest_images, image_iou, majority_class

    per_image = torch.tensor([
        [9, 1, 0],  # IoU 0.9
        [0, 0, 0],  # no digit, none predicted: 1.0, never "hard"
        [1, 2, 1],  # 0.25
        [0, 5, 5],  # 0.0: misread as a whole
        [1, 1, 2],  # 0.25, after image 2 on the tie
    ])  # fmt: skip
    assert hardest_images(per_image, 3).tolist() == [3, 2, 4]
    assert [image_iou(row) for row in per_image] == [0.9, 1.0, 0.25, 0.0, 0.25]
    assert majority_class(torch.tensor([[0, 4, 4], [2, 4, 0]])) == 4
    assert majority_class(torch.zeros(2, 2, dtype=torch.int64)) == 0
