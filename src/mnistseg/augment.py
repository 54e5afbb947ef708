"""Random affine augmentation of a whole batch in one call.

The reference augments one image at a time in DataLoader workers. Here every image of a
batch gets its own random affine (rotation, x-shear, scale, whole-pixel translation, the
ranges of :data:`AFFINE_RANGES`), and the batch is warped by one ``F.grid_sample`` call.

``F.affine_grid`` asks for the *inverse* map: for each output pixel, where to sample
in the input. Coordinates are normalised to [-1, 1] (``align_corners=False``), so a
pixel-space map ``p_out = A p_in + t`` about the image centre becomes, with
``D = diag(W/2, H/2)``, ``n_in = D^-1 A^-1 D n_out - D^-1 A^-1 t``.
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

    Returns:
        float ``[B, H, W, 2]`` normalised input coordinates for each output pixel.
    """
    half = torch.tensor([width / 2.0, height / 2.0], device=linear.device, dtype=linear.dtype)
    inverse = torch.linalg.inv(linear)  # (B, 2, 2)
    # D^-1 A^-1 D, then the shift carried through the inverse into normalised units.
    theta_linear = inverse * half.view(1, 1, 2) / half.view(1, 2, 1)
    theta_shift = -(inverse @ shift.unsqueeze(-1)).squeeze(-1) / half  # (B, 2)
    theta = torch.cat([theta_linear, theta_shift.unsqueeze(-1)], dim=2)  # (B, 2, 3)
    return F.affine_grid(theta, [len(theta), 1, height, width], align_corners=False)


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
