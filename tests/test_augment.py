"""The batched random affine: hand-checked maps, and draws within the stated ranges."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mnistseg.augment import AFFINE_RANGES, AffineRanges, augment_batch, random_affine_matrices, sampling_grid


def warp(images: torch.Tensor, linear: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    grid = sampling_grid(linear, shift, *images.shape[-2:])
    return F.grid_sample(images, grid, mode="nearest", align_corners=False)


def test_a_shift_moves_content_right_and_down() -> None:
    image = torch.zeros(1, 1, 6, 6)
    image[0, 0, 2, 1] = 1.0  # row 2, column 1
    moved = warp(image, torch.eye(2).unsqueeze(0), torch.tensor([[2.0, 1.0]]))  # x + 2, y + 1
    assert moved[0, 0].nonzero().tolist() == [[3, 3]]


def test_a_quarter_turn_is_a_rot90() -> None:
    # With x to the right and y down, [[0, -1], [1, 0]] sends (x, y) to (-y, x): the pixel
    # right of the centre goes below it, a clockwise quarter turn on screen.
    image = torch.arange(16.0).view(1, 1, 4, 4)
    turned = warp(image, torch.tensor([[[0.0, -1.0], [1.0, 0.0]]]), torch.zeros(1, 2))
    assert torch.equal(turned, torch.rot90(image, k=-1, dims=(-2, -1)))


def test_scale_two_doubles_about_the_centre() -> None:
    image = torch.zeros(1, 1, 8, 8)
    image[0, 0, 3:5, 3:5] = 1.0  # the 2x2 centre block
    grown = warp(image, 2 * torch.eye(2).unsqueeze(0), torch.zeros(1, 2))
    assert grown[0, 0].nonzero().min().item() == 2 and grown[0, 0].nonzero().max().item() == 5  # 4x4 block


def test_draws_stay_in_the_reference_ranges() -> None:
    linear, shift = random_affine_matrices(2000, generator=torch.Generator().manual_seed(0))
    # linear = scale * rotation @ [[1, -tan(shear)], [0, 1]], so det = scale^2 and the
    # first column (rotation's) has length scale.
    scale = torch.linalg.det(linear).sqrt()
    assert 0.85 <= scale.min() and scale.max() <= 1.15
    angle = torch.rad2deg(torch.atan2(linear[:, 1, 0], linear[:, 0, 0]))
    assert angle.abs().max() <= AFFINE_RANGES.degrees + 1e-4
    shear = torch.rad2deg(torch.atan(-(linear[:, 0, 1] * torch.cos(torch.deg2rad(angle)) +
                                       linear[:, 1, 1] * torch.sin(torch.deg2rad(angle))) / scale))  # fmt: skip
    assert shear.abs().max() <= AFFINE_RANGES.shear_degrees + 1e-3 and shear.abs().max() > 14
    assert set(shift.unique().tolist()) == {-2.0, -1.0, 0.0, 1.0, 2.0}  # whole pixels, +-2
    assert math.isclose(scale.mean().item(), 1.0, abs_tol=0.01)


def test_identity_ranges_change_nothing() -> None:
    images = torch.rand(16, 1, 28, 28)
    masks = torch.randint(0, 11, (16, 28, 28))
    identity = AffineRanges(degrees=0.0, translate_px=0.0, scale=(1.0, 1.0), shear_degrees=0.0)
    warped, warped_masks = augment_batch(images, masks, ranges=identity)
    torch.testing.assert_close(warped, images, atol=1e-5, rtol=0)
    assert torch.equal(warped_masks, masks)
