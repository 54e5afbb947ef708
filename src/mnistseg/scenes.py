"""Multi-digit scenes: several MNIST digits on one larger canvas.

A page of handwriting holds several digits; a network trained on single centred digits
has never had to tell two apart. A scene places 1 to 5 digits at random on a 64x64 black
canvas, composed by taking the brighter pixel wherever two digits meet. The mask follows
the same threshold rule as single digits, and where digits overlap:

    a pixel over the threshold belongs to the digit whose own pixel is brightest there
    (the later-placed digit on a tie),

which is the digit that the composed pixel's value came from. Placement keeps the
overlap of any two digits' 20x20 cores under ``max_overlap`` of a core.

Scenes are made deterministically from a seed, from whatever digits they are given: the
trainer gives training scenes only training-split digits, validation scenes only
validation digits, and the test scenes only test digits.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mnistseg.datasets import DEFAULT_THRESHOLD, get_dataset

SCENE_SIZE = get_dataset("scenes").image_size  # 64: the registry says it, once
DIGITS_PER_SCENE = (1, 5)
TEST_SCENES = 2000
SCENES_PER_DIGIT = 1 / 3  # as many scenes as a third of the split's digits (about 3 digits a scene)
TEST_SCENE_SEED = 20_260_000  # the test scenes are the same for every model
CORE = 20  # MNIST digits sit in a 20x20 box at the centre of their 28x28 frame


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
    if size < 28 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and at least 28, got {size}")
    if len(images) == 0 or images.shape[1:] != (28, 28) or images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 [N, 28, 28] with N > 0, got {images.dtype} {list(images.shape)}")
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
