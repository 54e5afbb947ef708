"""The article's random affine, for one image or a whole batch in one call.

The article augments with Albumentations 1.1 (January 2022)::

    A.Affine(scale=(0.85, 1.15), translate_px=(-2, 2), rotate=(-10, 10), shear=(-15, 15), always_apply=True)

As Albumentations implements that, every image draws seven numbers independently
(:func:`random_affine_parameters`): a scale for x and one for y (``keep_ratio`` is off),
a rotation, an x-shear and a y-shear (two angles from the one range), and a whole-pixel
shift per axis, uniform on -2..2. :func:`affine_matrices` composes them exactly as
Albumentations 1.1 did with scikit-image, about the image centre. The image is then
sampled bilinearly, the mask by nearest neighbour, zeros outside (:func:`warp`).
``tests/test_augment.py`` checks the draws against Albumentations and the composition
against matrices that Albumentations 1.1 itself produced.

Two entry points share that sampler and that warp:

* :class:`RandomAffine`, the per-item transform of ``SegmentationMNIST`` (the article's way);
* :func:`augment_batch`, one ``F.grid_sample`` call for a whole batch (the fast path).

``grid_sample`` asks for the *inverse* map: for each output pixel, where to read in the
input, in coordinates normalised to [-1, 1]. :func:`sampling_grid` builds it from the
forward map ``p_out = A p_in + t`` (pixels, about the image centre).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class AffineRanges:
    """Ranges of the random affine, as in the article's Albumentations ``Affine``.

    Attributes:
        degrees: rotation drawn from [-degrees, degrees].
        translate_px: shift per axis, a whole number drawn uniformly from -translate_px..translate_px.
        scale: zoom factor per axis, x and y drawn independently from [low, high].
        shear_degrees: x-shear and y-shear angles, each drawn from [-shear_degrees, shear_degrees].
    """

    degrees: float = 10.0
    translate_px: int = 2
    scale: tuple[float, float] = (0.85, 1.15)
    shear_degrees: float = 15.0

    def __post_init__(self) -> None:
        if self.translate_px < 0 or int(self.translate_px) != self.translate_px:
            raise ValueError(f"translate_px must be a whole number >= 0, got {self.translate_px}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")


AFFINE_RANGES = AffineRanges()


@dataclass(frozen=True)
class AffineParameters:
    """One draw per image; every field is a float32 ``[B]`` tensor.

    Attributes:
        scale_x, scale_y: zoom factors.
        rotate: rotation in degrees.
        shear_x, shear_y: shear angles in degrees.
        translate_x, translate_y: whole-pixel shifts (stored as floats).
    """

    scale_x: Tensor
    scale_y: Tensor
    rotate: Tensor
    shear_x: Tensor
    shear_y: Tensor
    translate_x: Tensor
    translate_y: Tensor


def random_affine_parameters(
    batch_size: int,
    ranges: AffineRanges = AFFINE_RANGES,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> AffineParameters:
    """Draw the seven parameters of the article's affine for each of ``batch_size`` images."""

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(batch_size, generator=generator, device=device)

    def whole(limit: int) -> Tensor:  # uniform on -limit..limit, both ends included (Python's randint)
        draw = torch.randint(-limit, limit + 1, (batch_size,), generator=generator, device=device)
        return draw.to(torch.float32)

    limit = int(ranges.translate_px)
    return AffineParameters(
        scale_x=uniform(*ranges.scale),
        scale_y=uniform(*ranges.scale),
        rotate=uniform(-ranges.degrees, ranges.degrees),
        shear_x=uniform(-ranges.shear_degrees, ranges.shear_degrees),
        shear_y=uniform(-ranges.shear_degrees, ranges.shear_degrees),
        translate_x=whole(limit),
        translate_y=whole(limit),
    )


def affine_matrices(parameters: AffineParameters) -> tuple[Tensor, Tensor]:
    """Compose the forward maps the way Albumentations 1.1 (with scikit-image) does.

    About the image centre, ``p_out = M @ Y @ p_in + t`` where ``Y = [[cos b, 0], [sin b, 1]]``
    is the y-shear by ``b`` (scikit-image's x-shear between two quarter turns) and
    ``M = [[sx cos r, -sy sin(r + a)], [sx sin r, sy cos(r + a)]]`` is scikit-image's
    ``AffineTransform(scale=(sx, sy), rotation=r, shear=a)``; x to the right, y down.

    Returns:
        ``(linear float32 [B, 2, 2], shift float32 [B, 2])``, the shift as (x, y) pixels.
    """
    rotate, shear_x, shear_y = (torch.deg2rad(angle) for angle in (parameters.rotate, parameters.shear_x,
                                                                  parameters.shear_y))  # fmt: skip
    sx, sy = parameters.scale_x, parameters.scale_y
    m00, m01 = sx * torch.cos(rotate), -sy * torch.sin(rotate + shear_x)
    m10, m11 = sx * torch.sin(rotate), sy * torch.cos(rotate + shear_x)
    cos_b, sin_b = torch.cos(shear_y), torch.sin(shear_y)
    linear = torch.stack(
        [torch.stack([m00 * cos_b + m01 * sin_b, m01], dim=1), torch.stack([m10 * cos_b + m11 * sin_b, m11], dim=1)],
        dim=1,
    )  # (B, 2, 2) = M @ Y
    shift = torch.stack([parameters.translate_x, parameters.translate_y], dim=1)  # (B, 2)
    return linear, shift


def random_affine_matrices(
    batch_size: int,
    ranges: AffineRanges = AFFINE_RANGES,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """One random forward map per image: :func:`affine_matrices` of :func:`random_affine_parameters`."""
    return affine_matrices(random_affine_parameters(batch_size, ranges, generator, device))


def sampling_grid(linear: Tensor, shift: Tensor, height: int, width: int) -> Tensor:
    """The ``grid_sample`` grid that applies ``p -> linear @ p + shift`` to ``[H, W]`` images.

    For each output pixel, its centre ``q`` (pixels, relative to the image centre) is
    mapped back to the input point ``linear^-1 (q - shift)``, then normalised to [-1, 1]
    as ``grid_sample(align_corners=False)`` expects. Built by broadcasting, which is
    several times faster on a CPU than ``torch.linalg.inv`` plus ``F.affine_grid`` for
    a batch of 2x2 maps.

    Args:
        linear: float ``[B, 2, 2]``.
        shift: float ``[B, 2]`` as (x, y) pixels.
        height: image height H.
        width: image width W.

    Returns:
        float ``[B, H, W, 2]`` normalised (x, y) input coordinates for each output pixel.
    """
    (a, b), (c, d) = linear[:, 0].unbind(-1), linear[:, 1].unbind(-1)  # each (B,)
    determinant = a * d - b * c
    inverse = [[d / determinant, -b / determinant], [-c / determinant, a / determinant]]  # 2x2 of (B,)
    columns = torch.arange(width, device=linear.device, dtype=linear.dtype) + 0.5 - width / 2
    rows = torch.arange(height, device=linear.device, dtype=linear.dtype) + 0.5 - height / 2
    qx = columns.view(1, 1, width) - shift[:, 0].view(-1, 1, 1)  # (B, 1, W)
    qy = rows.view(1, height, 1) - shift[:, 1].view(-1, 1, 1)  # (B, H, 1)
    px = inverse[0][0].view(-1, 1, 1) * qx + inverse[0][1].view(-1, 1, 1) * qy  # (B, H, W)
    py = inverse[1][0].view(-1, 1, 1) * qx + inverse[1][1].view(-1, 1, 1) * qy
    return torch.stack([px * (2.0 / width), py * (2.0 / height)], dim=-1)  # (B, H, W, 2)


def warp(images: Tensor, masks: Tensor | None, linear: Tensor, shift: Tensor) -> tuple[Tensor, Tensor | None]:
    """Apply ``p -> linear @ p + shift`` to images (bilinear) and masks (nearest), zeros outside.

    Args:
        images: float ``[B, 1, H, W]``.
        masks: int64 ``[B, H, W]`` class ids, or None.
        linear: float ``[B, 2, 2]``; shift: float ``[B, 2]`` (x, y) pixels.

    Returns:
        ``(images [B, 1, H, W], masks int64 [B, H, W] or None)``.
    """
    batch, _, height, width = images.shape
    grid = sampling_grid(linear.to(images.device), shift.to(images.device), height, width).to(images.dtype)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is None:
        return warped, None
    if masks.shape != (batch, height, width):
        raise ValueError(f"masks must be [B, H, W] = {[batch, height, width]}, got {list(masks.shape)}")
    class_ids = masks.unsqueeze(1).to(images.dtype)  # (B, 1, H, W): ids are exact in float32
    warped_masks = F.grid_sample(class_ids, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped, warped_masks[:, 0].round().to(torch.int64)


def augment_batch(
    images: Tensor,
    masks: Tensor | None = None,
    ranges: AffineRanges = AFFINE_RANGES,
    generator: torch.Generator | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Warp each image (and its mask, if given) by its own draw of the article's affine.

    Args:
        images: float ``[B, 1, H, W]``.
        masks: optional int64 ``[B, H, W]``.
        ranges: the ranges to draw from.
        generator: random source (on the images' device) for reproducible draws.

    Returns:
        The warped images ``[B, 1, H, W]``, or ``(images, masks)`` if masks were given.
    """
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be [B, 1, H, W], got {tuple(images.shape)}")
    linear, shift = random_affine_matrices(len(images), ranges, generator, images.device)
    warped, warped_masks = warp(images, masks, linear, shift)
    return warped if warped_masks is None else (warped, warped_masks)


class RandomAffine:
    """The article's augmentation for one ``(image, mask)`` pair, as ``SegmentationMNIST`` calls it.

    The same draws (:func:`random_affine_parameters`) and the same warp as
    :func:`augment_batch`, one image at a time, from torch's global random generator (which
    each DataLoader worker seeds differently). Always applied: the article's
    ``always_apply=True``.

    Args:
        ranges: the ranges to draw from.

    Call with image float ``[1, H, W]`` and mask int64 ``[H, W]``; returns both warped.
    """

    def __init__(self, ranges: AffineRanges = AFFINE_RANGES) -> None:
        self.ranges = ranges

    def __call__(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        linear, shift = random_affine_matrices(1, self.ranges, device=image.device)
        warped, warped_mask = warp(image.unsqueeze(0), mask.unsqueeze(0), linear, shift)
        return warped[0], warped_mask[0]

    def __repr__(self) -> str:
        return f"RandomAffine({self.ranges})"
