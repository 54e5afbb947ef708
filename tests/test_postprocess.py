"""Post-processing on hand-built masks: the region vote, the parts rule, small regions, the one function."""

from __future__ import annotations

import pytest
import torch

from mnistseg.postprocess import (
    InferencePolicy,
    drop_small_regions,
    label_parts,
    masks_from_logits,
    vote_by_parts,
    vote_by_region,
)

# Two digits that touch: a "3" (class 4) on the left, 6 pixels, and a "7" (class 8) on the right,
# 6 pixels; column 2 is where they meet. One region of 12 pixels, two parts of half each.
TOUCHING = torch.tensor(
    [
        [
            [4, 4, 8, 8, 0],
            [4, 4, 8, 8, 0],
            [4, 4, 8, 8, 0],
        ]
    ]
)
# One digit (class 2) of 11 pixels with a stray island of one pixel read as class 9 inside it,
# and, apart, a lone speck of class 5 far from everything.
ISLAND = torch.tensor(
    [
        [
            [2, 2, 2, 2, 0, 0],
            [2, 9, 2, 2, 0, 0],
            [2, 2, 2, 2, 0, 5],
        ]
    ]
)


def test_the_region_vote_merges_touching_digits() -> None:
    # 6 pixels of 4 against 6 of 8: a tie, and argmax takes the first class.
    assert vote_by_region(TOUCHING, 11).unique().tolist() == [0, 4]


def test_the_parts_rule_keeps_two_touching_digits() -> None:
    # Each part holds 6 / 12 = 50% of the region: both are coherent at 25%, and stay.
    assert torch.equal(vote_by_parts(TOUCHING, 11, min_part_share=0.25), TOUCHING)
    # Above 50%, neither is coherent: the region falls back to its majority, as the region vote.
    assert torch.equal(vote_by_parts(TOUCHING, 11, min_part_share=0.6), vote_by_region(TOUCHING, 11))


def test_the_parts_rule_absorbs_a_stray_island() -> None:
    voted = vote_by_parts(ISLAND, 11, min_part_share=0.25)
    # The 9 is 1 / 12 of its region: it takes the class of the part around it, 2.
    assert voted[0, 1, 1] == 2 and (voted[0, :, :4] == 2).all()
    # The lone speck is its own region (8-connected: it touches nothing), all of it: kept as it is.
    assert voted[0, 2, 5] == 5


def test_parts_are_connected_patches_of_one_class() -> None:
    parts, part_class = label_parts(ISLAND, 11)
    # Three parts: the 2s (11 pixels, a ring around the 9 still joined 8-connected), the 5 and the 9.
    assert sorted(part_class[1:].tolist()) == [2, 5, 9]
    sizes = {int(part_class[index]): int((parts == index).sum()) for index in range(1, len(part_class))}
    assert sizes == {2: 11, 9: 1, 5: 1}


def test_small_regions_are_dropped_per_image() -> None:
    # Image 0: a 10-pixel digit and a 1-pixel speck (10% of it); image 1: a lone 1-pixel region,
    # its image's largest, so it stays although it is smaller than image 0's speck threshold.
    masks = torch.zeros(2, 4, 6, dtype=torch.int64)
    masks[0, :2, :5] = 3
    masks[0, 3, 5] = 7
    masks[1, 0, 0] = 1
    kept = drop_small_regions(masks, 0.2)
    assert kept[0, 3, 5] == 0 and (kept[0, :2, :5] == 3).all() and kept[1, 0, 0] == 1
    assert torch.equal(drop_small_regions(masks, 0.05), masks)  # 10% clears 5%


def test_the_one_function_applies_the_policy() -> None:
    logits = torch.nn.functional.one_hot(ISLAND, 11).permute(0, 3, 1, 2).float()  # (1, 11, 3, 6)
    assert torch.equal(masks_from_logits(logits, InferencePolicy()), ISLAND)  # the argmax as it is
    assert torch.equal(masks_from_logits(logits, InferencePolicy(vote="region")), vote_by_region(ISLAND, 11))
    # The speck is one pixel against the digit's 11: under 20%, dropped.
    parts_and_specks = masks_from_logits(logits, InferencePolicy(vote="parts", min_region_share=0.2))
    assert parts_and_specks[0, 2, 5] == 0 and parts_and_specks[0, 1, 1] == 2
    # Outside the foreground given, background whatever the logits say.
    foreground = torch.ones(1, 3, 6, dtype=torch.bool)
    foreground[0, :, 0] = False
    assert (masks_from_logits(logits, InferencePolicy(), foreground)[0, :, 0] == 0).all()
    with pytest.raises(ValueError, match="vote must be one of none, region, parts"):
        InferencePolicy(vote="majority")
