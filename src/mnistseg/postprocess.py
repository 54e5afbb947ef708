"""Stage 5: from a network's logits to a mask, the one way (post-processing; counting is metrics.py's).

A network gives every pixel its own class. Post-processing then uses what a pixel alone cannot
know, that a digit is one connected stroke:

* ``"region"``: every connected foreground region takes the class most of its pixels have. A
  few pixels given another digit inside a stroke are outvoted, but two digits that touch are
  one region and become one digit.
* ``"parts"``: the same, except that a region keeps each *coherent* part a class holds in it
  (a connected part of one class with at least ``min_part_share`` of the region's pixels);
  smaller islands take the class of the coherent part they touch most. Two touching digits,
  each read as itself, stay two digits; a stray island inside a digit is absorbed.

:class:`InferencePolicy` says which, and whether the logits are averaged over one-pixel shifts
first (``tta``) and small regions dropped (``min_region_share``); :func:`masks_from_logits`
applies it. Regions are 8-connected, parts too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mnistseg.recipes import DEFAULT_MIN_PART_SHARE, check_vote

# The 8 neighbours of a pixel, as (dy, dx).
NEIGHBOURS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))


@dataclass(frozen=True)
class InferencePolicy:
    """How a checkpoint's logits become a mask.

    Attributes:
        tta: average the logits over the image and its four one-pixel shifts first.
        vote: "none" (the argmax as it is), "region" or "parts" (see the module's docstring).
        min_part_share: with "parts", the least share of its region a part must hold to stay.
        min_region_share: regions with fewer pixels than this share of the image's largest
            become background (0: keep every region).
    """

    tta: bool = False
    vote: str = "none"
    min_part_share: float = DEFAULT_MIN_PART_SHARE
    min_region_share: float = 0.0

    def __post_init__(self) -> None:
        check_vote(self.vote, self.min_part_share)
        if not 0.0 <= self.min_region_share < 1.0:
            raise ValueError(f"min_region_share must be in [0, 1), got {self.min_region_share}")


# The network's own argmax, nothing after it: what validation scores, and a bare network runs.
NETWORK_ALONE = InferencePolicy()


def classes_of(logits: Tensor) -> Tensor:
    """The class of each pixel: int64 ``[N, H, W]`` from logits ``[N, C, H, W]``, the argmax over C.

    Taken as ``max(dim=1).indices``: the same classes, ties included (the first), but about
    5x faster than ``argmax(dim=1)`` on a CPU for logits in NCHW layout, where PyTorch's
    argmax takes a slow path.
    """
    return logits.max(dim=1).indices


def label_regions(masks: Tensor) -> tuple[np.ndarray, int]:
    """Number the connected patches of foreground (8-connected) of each mask.

    Args:
        masks: int ``[N, H, W]`` class ids; every id above 0 is foreground. A region may
            hold several classes: connectivity ignores which digit a pixel was given.

    Returns:
        ``(regions, count)``: int32 ``[N, H, W]`` numpy array, 0 on background and
        1..count on the regions, numbered across the whole batch (none spans two images).
    """
    return _label(masks.cpu().numpy() > 0)


def label_parts(masks: Tensor, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Number the connected patches of each single class (8-connected).

    Returns:
        ``(parts [N, H, W], part_class [count + 1])``: 0 on background and 1..count on the
        parts, numbered across the batch; each part's class (0 for row 0).
    """
    classes = masks.cpu().numpy()
    parts = np.zeros(classes.shape, dtype=np.int64)
    part_class = [0]
    for value in range(1, num_classes):
        labelled, count = _label(classes == value)
        parts = np.where(labelled > 0, labelled + len(part_class) - 1, parts)
        part_class += [value] * count
    return parts, np.asarray(part_class, dtype=np.int64)


def _label(foreground: np.ndarray) -> tuple[np.ndarray, int]:
    from scipy import ndimage  # 0.2 s to import: only where regions are counted

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # the 8 neighbours within an image, none in the images before or after
    labelled, count = ndimage.label(foreground, structure=structure)
    return labelled, int(count)


def region_majorities(masks: Tensor, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each foreground region's pixel count per class.

    Returns:
        ``(regions [N, H, W], votes [count + 1, num_classes], winners [count + 1])``:
        :func:`label_regions`' numbering, the pixels of each class in each region (row 0:
        background), and each region's most frequent class (0 for row 0).
    """
    regions, count = label_regions(masks)
    classes = masks.cpu().numpy().astype(np.int64)
    votes = np.zeros((count + 1, num_classes), dtype=np.int64)
    np.add.at(votes, (regions.ravel(), classes.ravel()), 1)
    votes[0] = 0
    return regions, votes, votes.argmax(axis=1)


def vote_by_region(masks: Tensor, num_classes: int) -> Tensor:
    """Give every connected foreground region the class most of its pixels have.

    Args:
        masks: int64 ``[N, H, W]`` predicted class ids.
        num_classes: classes, background included.

    Returns:
        int64 ``[N, H, W]``, background unchanged.
    """
    regions, _, winners = region_majorities(masks, num_classes)
    return torch.from_numpy(winners[regions]).to(masks.device, torch.int64)


def touching_votes(parts: np.ndarray, weight: np.ndarray, part_class: np.ndarray, num_classes: int) -> np.ndarray:
    """Per part, how many of its pixels' neighbour pixels lie in parts with ``weight`` 1, by their class.

    Returns:
        int64 ``[count + 1, num_classes]``.
    """
    votes = np.zeros((len(part_class), num_classes), dtype=np.int64)
    height, width = parts.shape[1:]
    padded = np.pad(parts, ((0, 0), (1, 1), (1, 1)))
    for dy, dx in NEIGHBOURS:
        neighbour = padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
        touching = (parts > 0) & (neighbour > 0) & (neighbour != parts) & (weight[neighbour] == 1)
        np.add.at(votes, (parts[touching], part_class[neighbour[touching]]), 1)
    return votes


def vote_by_parts(masks: Tensor, num_classes: int, min_part_share: float) -> Tensor:
    """Keep each coherent part of a region's classes; small islands join the part they touch most.

    A part (a connected patch of one class) is coherent when it holds at least
    ``min_part_share`` of its region's pixels. Every other part takes the class its coherent
    neighbours touch it with most; a part that touches none (or a region with no coherent part)
    takes the region's majority, as :func:`vote_by_region` gives it.

    Args:
        masks: int64 ``[N, H, W]`` predicted class ids.
        num_classes: classes, background included.
        min_part_share: the share of its region a part needs to keep its class.

    Returns:
        int64 ``[N, H, W]``, background unchanged.
    """
    regions, _, majority = region_majorities(masks, num_classes)
    parts, part_class = label_parts(masks, num_classes)
    part_size = np.bincount(parts.ravel(), minlength=len(part_class))
    part_region = np.zeros(len(part_class), dtype=np.int64)
    part_region[parts.ravel()] = regions.ravel()  # every pixel of a part lies in one region
    region_size = np.bincount(regions.ravel(), minlength=len(majority))
    coherent = (part_size >= min_part_share * region_size[part_region]).astype(np.int64)
    coherent[0] = 0
    votes = touching_votes(parts, coherent, part_class, num_classes)
    new_class = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), majority[part_region])
    new_class = np.where(coherent == 1, part_class, new_class)
    new_class[0] = 0
    return torch.from_numpy(new_class[parts]).to(masks.device, torch.int64)


def drop_small_regions(masks: Tensor, min_region_share: float) -> Tensor:
    """Make background every region with fewer pixels than ``min_region_share`` of its image's largest.

    Args:
        masks: int64 ``[N, H, W]`` class ids.

    Returns:
        int64 ``[N, H, W]``.
    """
    regions, count = label_regions(masks)
    size = np.bincount(regions.ravel(), minlength=count + 1)
    size[0] = 0
    image_of = np.zeros(count + 1, dtype=np.int64)
    image_of[regions.reshape(len(regions), -1)] = np.arange(len(regions))[:, None]
    largest = np.zeros(len(regions), dtype=np.int64)
    np.maximum.at(largest, image_of[1:], size[1:])
    keep = size >= min_region_share * largest[image_of]
    keep[0] = False
    return torch.where(torch.from_numpy(keep[regions]).to(masks.device), masks, 0)


def masks_from_logits(logits: Tensor, policy: InferencePolicy, foreground: Tensor | None = None) -> Tensor:
    """The one way from logits to a mask: the argmax, then the policy's vote and small-region rule.

    Args:
        logits: float ``[N, C, H, W]`` (already averaged over shifts if ``policy.tta``).
        policy: the vote and small-region rule to apply.
        foreground: bool ``[N, H, W]``, optional: pixels outside it are background before the vote
            (``mnistseg predict`` puts the mask back on the strokes as drawn).

    Returns:
        int64 ``[N, H, W]`` class ids, on the logits' device.
    """
    masks = classes_of(logits)  # (N, H, W)
    if foreground is not None:
        masks = torch.where(foreground.to(masks.device), masks, 0)
    if policy.vote == "region":
        masks = vote_by_region(masks, logits.shape[1])
    elif policy.vote == "parts":
        masks = vote_by_parts(masks, logits.shape[1], policy.min_part_share)
    if policy.min_region_share > 0:
        masks = drop_small_regions(masks, policy.min_region_share)
    return masks
