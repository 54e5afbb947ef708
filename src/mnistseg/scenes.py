"""Multi-digit scenes: several MNIST digits on one larger canvas.

A page of handwriting holds several digits; a network trained on single centred digits
has never had to tell two apart. Two layouts, each on a 64x64 black canvas:

* ``scattered`` (:func:`make_scenes`): 1 to 5 digits at random places, rarely touching;
* ``rows`` (:func:`make_rows`): 1 to 3 digits side by side as a number is written, each
  pushed against the one before until their ink touches, then closer still or apart by up
  to 4 pixels: neighbours that touch and overlap, as in tight handwriting.

Digits are composed by taking the brighter pixel wherever two meet. The mask follows the
same threshold rule as single digits, and where digits overlap:

    a pixel over the threshold belongs to the digit whose own pixel is brightest there
    (the later-placed digit on a tie),

which is the digit that the composed pixel's value came from. Scattered placement keeps
the overlap of any two digits' 20x20 cores under ``max_overlap`` of a core.

Scenes are made deterministically from a seed, from whatever digits they are given: the
trainer gives training scenes only training-split digits, validation scenes only
validation digits, and the test scenes only test digits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mnistseg.datasets import DEFAULT_THRESHOLD, get_dataset

SCENE_SIZE = get_dataset("scenes").image_size  # 64: the registry says it, once
DIGITS_PER_SCENE = (1, 5)
TEST_SCENES = 2000
SCENES_PER_DIGIT = 1 / 3  # as many scenes as a third of the split's digits (about 3 digits a scene)
TEST_SCENE_SEED = 20_260_000  # the test scenes are the same for every model
CORE = 20  # MNIST digits sit in a 20x20 box at the centre of their 28x28 frame
DIGITS_PER_ROW = (1, 3)
ROW_SPACING = (-4, 4)  # pixels between a digit's ink and the last one's after touching: < 0 overlaps
ROW_JITTER = 2  # each digit of a row sits up to this many pixels above or below the row's line


def make_scenes(
    images: Tensor,
    labels: Tensor,
    count: int,
    seed: int,
    threshold: float = DEFAULT_THRESHOLD,
    size: int = SCENE_SIZE,
    digits_per_scene: tuple[int, int] = DIGITS_PER_SCENE,
    max_overlap: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """Compose ``count`` scenes from the given digits.

    Args:
        images: uint8 ``[N, 28, 28]`` digits to draw from.
        labels: int64 ``[N]`` their digits.
        count: number of scenes.
        seed: seeds every choice (which digits, how many, where).
        threshold: the foreground threshold of the mask rule.
        size: canvas height and width (a multiple of 4, at least 28).
        digits_per_scene: inclusive range of digits per scene.
        max_overlap: largest allowed overlap of two digits' cores, as a fraction of a core.

    Returns:
        ``(scenes uint8 [count, size, size], masks int64 [count, size, size])``.
    """
    _check_digits(images, size)
    low, high = digits_per_scene
    generator = torch.Generator().manual_seed(seed)
    scenes = torch.zeros(count, size, size, dtype=torch.uint8)
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    limit = size - 28
    for scene in range(count):
        wanted = int(torch.randint(low, high + 1, (1,), generator=generator))
        placed: list[tuple[int, int]] = []
        brightest = torch.zeros(size, size, dtype=torch.uint8)
        for _ in range(wanted):
            for _attempt in range(20):
                top, left = (int(v) for v in torch.randint(0, limit + 1, (2,), generator=generator))
                if all(_core_overlap(top, left, other) <= max_overlap for other in placed):
                    break
            else:
                continue  # no room left for this digit: the scene keeps fewer
            placed.append((top, left))
            index = int(torch.randint(0, len(images), (1,), generator=generator))
            digit = images[index]
            window = (slice(top, top + 28), slice(left, left + 28))
            wins = (digit >= brightest[window]) & (digit.float() / 255 > threshold)
            masks[scene][window] = torch.where(wins, labels[index] + 1, masks[scene][window])
            brightest[window] = torch.maximum(brightest[window], digit)
        scenes[scene] = brightest
    return scenes, masks


def _core_overlap(top: int, left: int, other: tuple[int, int]) -> float:
    """Overlap of two digits' 20x20 cores, as a fraction of one core's area."""
    rows = max(0, CORE - abs(top - other[0]))
    columns = max(0, CORE - abs(left - other[1]))
    return rows * columns / (CORE * CORE)


def touching_offset(left_ink: np.ndarray, right_ink: np.ndarray) -> int | None:
    """Where ``right_ink`` just touches ``left_ink`` (8-connected) when slid in from the right.

    Args:
        left_ink: bool ``[H, W]``, the ink so far.
        right_ink: bool ``[H, w]``, the piece to place, same height.

    Returns:
        the column of ``left_ink`` at which ``right_ink``'s first column goes so that the
        two touch without overlapping, or None when no row holds ink in both. Sliding in
        from the right, the first contact is between ``left_ink``'s right edge, grown by a
        pixel each way, and ``right_ink``'s left edge, row by row.
    """
    if left_ink.shape[0] != right_ink.shape[0]:
        raise ValueError(f"both pieces need the same height, got {left_ink.shape[0]} and {right_ink.shape[0]}")
    none = -(10**6)  # a row without ink
    columns = np.arange(left_ink.shape[1])
    right_edge = np.where(left_ink.any(axis=1), np.where(left_ink, columns, -1).max(axis=1), none)
    padded = np.pad(right_edge, 1, constant_values=none)
    grown = np.maximum(padded[:-2], np.maximum(padded[1:-1], padded[2:]))  # the rows above and below too
    has_ink = right_ink.any(axis=1)
    left_edge = right_ink.argmax(axis=1)
    touching = (grown > none) & has_ink
    offsets = grown + 1 - left_edge
    return int(offsets[touching].max()) if touching.any() else None


def make_rows(
    images: Tensor,
    labels: Tensor,
    count: int,
    seed: int,
    threshold: float = DEFAULT_THRESHOLD,
    size: int = SCENE_SIZE,
    digits_per_row: tuple[int, int] = DIGITS_PER_ROW,
    spacing: tuple[int, int] = ROW_SPACING,
) -> tuple[Tensor, Tensor]:
    """Compose ``count`` rows of touching digits, each row centred on its canvas.

    Each digit after the first is placed where its ink just touches the row's so far
    (:func:`touching_offset`), then moved by a spacing drawn from ``spacing`` (negative:
    into the last digit). A digit that would leave the canvas ends the row.

    Args:
        images: uint8 ``[N, 28, 28]`` digits to draw from.
        labels: int64 ``[N]`` their digits.
        count: number of rows.
        seed: seeds every choice (which digits, how many, the spacing, the jitter).
        threshold: the foreground threshold of the mask rule.
        size: canvas height and width (a multiple of 4, at least 28).
        digits_per_row: inclusive range of digits per row.
        spacing: inclusive range of the pixels between touching neighbours.

    Returns:
        ``(rows uint8 [count, size, size], masks int64 [count, size, size])``.
    """
    _check_digits(images, size)
    generator = torch.Generator().manual_seed(seed)

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=generator))

    rows = torch.zeros(count, size, size, dtype=torch.uint8)
    masks = torch.zeros(count, size, size, dtype=torch.int64)
    middle, level = (size - 28) // 2, threshold * 255
    for row in range(count):
        brightest = np.zeros((size, 3 * size), dtype=np.uint8)  # wide enough to build on, cropped after
        mask = np.zeros(brightest.shape, dtype=np.int64)
        end = 0
        for place in range(draw(*digits_per_row)):
            index = draw(0, len(images) - 1)
            digit = images[index].numpy()
            top = middle + draw(-ROW_JITTER, ROW_JITTER)
            piece = np.zeros((size, 28), dtype=np.uint8)
            piece[top : top + 28] = digit
            ink = piece > level
            left = 0
            if place:
                offset = touching_offset(brightest > level, ink)
                left = max(0, (end if offset is None else offset) + draw(*spacing))
                last_ink = left + int(np.flatnonzero(ink.any(axis=0)).max(initial=0))
                if last_ink - _ink_span(brightest, threshold)[0] >= size:
                    break  # the row would be wider than the canvas
            window = (slice(None), slice(left, left + 28))
            wins = (piece >= brightest[window]) & ink
            mask[window] = np.where(wins, int(labels[index]) + 1, mask[window])
            brightest[window] = np.maximum(brightest[window], piece)
            end = max(end, left + 28)
        first, last = _ink_span(brightest, threshold)
        start = min(max(0, (first + last + 1) // 2 - size // 2), brightest.shape[1] - size)
        rows[row] = torch.from_numpy(brightest[:, start : start + size].copy())
        masks[row] = torch.from_numpy(mask[:, start : start + size].copy())
    return rows, masks


def _check_digits(images: Tensor, size: int) -> None:
    if size < 28 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least 28, got {size}")
    if len(images) == 0 or images.shape[1:] != (28, 28) or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [N, 28, 28] with N > 0, got {images.dtype} {list(images.shape)}")


def _ink_span(canvas: np.ndarray, threshold: float) -> tuple[int, int]:
    """First and last column of ``canvas`` holding ink (0, 0 for a blank one)."""
    columns = np.flatnonzero((canvas > threshold * 255).any(axis=0))
    return (int(columns[0]), int(columns[-1])) if len(columns) else (0, 0)


def compose(
    layout: str, images: Tensor, labels: Tensor, count: int, seed: int, threshold: float, size: int
) -> tuple[Tensor, Tensor]:
    """``count`` canvases in ``layout`` ("scattered": :func:`make_scenes`, "rows": :func:`make_rows`)."""
    makers = {"scattered": make_scenes, "rows": make_rows}
    if layout not in makers:
        raise ValueError(f"layout must be one of {', '.join(makers)}, got {layout!r}")
    return makers[layout](images, labels, count, seed, threshold, size)
