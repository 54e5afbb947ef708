"""Random affine augmentation of a whole batch in one call.

The reference augments one image at a time in DataLoader workers. Here every image of a
batch gets its own random affine (rotation, x-shear, scale, whole-pixel translation, the
ranges of :data:`AFFINE_RANGES`), and the batch is warped by one ``F.grid_sample`` call.

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
    """Ranges of the random affine, as in the reference (Albumentations ``Affine``).

    Attributes:
        degrees: rotation drawn from [-degrees, degrees].
        translate_px: shift drawn from [-translate_px, translate_px] and rounded, per axis.
        scale: zoom factor drawn from [low, high].
        shear_degrees: x-axis shear drawn from [-shear_degrees, shear_degrees].
    """

    degrees: float = 10.0
    translate_px: float = 2.0
    scale: tuple[float, float] = (0.85, 1.15)
    shear_degrees: float = 15.0


AFFINE_RANGES = AffineRanges()


def random_affine_matrices(
    batch_size: int,
    ranges: AffineRanges = AFFINE_RANGES,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Draw one forward affine map per image, in pixel units about the image centre.

    Returns:
        ``(linear float32 [B, 2, 2], shift float32 [B, 2])`` with
        ``linear = scale * rotation @ shear_x`` and ``shift = (tx, ty)`` in pixels.
    """

    def uniform(low: float, high: float) -> Tensor:
        draw = torch.rand(batch_size, generator=generator, device=device)
        return low + (high - low) * draw

    angle = torch.deg2rad(uniform(-ranges.degrees, ranges.degrees))
    shear = torch.deg2rad(uniform(-ranges.shear_degrees, ranges.shear_degrees))
    scale = uniform(*ranges.scale)
    shift = torch.stack([uniform(-ranges.translate_px, ranges.translate_px).round() for _ in range(2)], dim=1)  # (B, 2)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # rotation @ [[1, -tan], [0, 1]], the composition torchvision's affine uses.
    linear = torch.stack(
        [torch.stack([cos, -cos * tan - sin], dim=1), torch.stack([sin, -sin * tan + cos], dim=1)], dim=1
    )  # (B, 2, 2)
    return linear * scale.view(-1, 1, 1), shift


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


def augment_batch(
    images: Tensor,
    masks: Tensor | None = None,
    ranges: AffineRanges = AFFINE_RANGES,
    generator: torch.Generator | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Warp each image (and its mask, if given) by its own random affine.

    Images are sampled bilinearly; masks with nearest-neighbour sampling so that class
    ids stay whole. Pixels that come from outside the image are 0 (background).

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
    batch, _, height, width = images.shape
    linear, shift = random_affine_matrices(batch, ranges, generator, images.device)
    grid = sampling_grid(linear, shift, height, width).to(images.dtype)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if masks is None:
        return warped
    if masks.shape != (batch, height, width):
        raise ValueError(f"masks must be [B, H, W] = {[batch, height, width]}, got {list(masks.shape)}")
    class_ids = masks.unsqueeze(1).to(images.dtype)  # (B, 1, H, W): ids are exact in float32
    warped_masks = F.grid_sample(class_ids, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return warped, warped_masks[:, 0].round().to(torch.int64)
