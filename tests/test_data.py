"""Stage 1: the mask rule, the per-item Dataset, the split and the batched loader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from mnistseg import SegmentationMNIST
from mnistseg.data import (
    BatchedLoader,
    load_arrays,
    masks_from_images,
    reference_train_transform,
    split_batches,
    split_indices,
)
from mnistseg.datasets import get_dataset


def test_mask_rule_at_the_threshold_edge() -> None:
    # Intensities are uint8 / 255. 51 / 255 is 0.2 exactly (in float32 too), and the rule is
    # "strictly over the threshold", so 51 is background and 52 is foreground.
    images = torch.tensor([[[50, 51, 52, 255]]], dtype=torch.float32) / 255  # (1, 1, 4)
    masks = masks_from_images(images, torch.tensor([7]), threshold=0.2)
    assert masks.dtype == torch.int64
    assert masks.tolist() == [[[0, 0, 8, 8]]]  # digit 7 -> class 8


def test_items_have_the_documented_shapes_and_masks(data_root: Path) -> None:
    dataset = SegmentationMNIST(data_root, train=False)
    assert len(dataset) == 10000
    image, mask = dataset[0]  # the first test image is a 7
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert mask.shape == (28, 28) and mask.dtype == torch.int64
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(mask.unique().tolist()) == {0, 8}
    assert torch.equal(mask == 8, image[0] > 0.2)


def test_threshold_changes_the_foreground(data_root: Path) -> None:
    low = SegmentationMNIST(data_root, threshold=0.1, train=False)[0][1]
    high = SegmentationMNIST(data_root, threshold=0.9, train=False)[0][1]
    assert (high > 0).sum() < (low > 0).sum()
    with pytest.raises(ValueError, match="threshold"):
        SegmentationMNIST(data_root, threshold=1.5)


def test_a_v2_transform_moves_image_and_mask_together(data_root: Path) -> None:
    torch.manual_seed(0)
    dataset = SegmentationMNIST(data_root, train=True, transform=reference_train_transform())
    original_image, original_mask = SegmentationMNIST(data_root, train=True)[0]
    for _ in range(5):
        image, mask = dataset[0]
        assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 6}  # the first image is a 5
        # The mask is warped with nearest, the image bilinearly: their foregrounds agree closely.
        image_foreground, mask_foreground = image[0] > 0.2, mask > 0
        iou = (image_foreground & mask_foreground).sum() / (image_foreground | mask_foreground).sum()
        assert iou > 0.8
    assert not torch.equal(image, original_image)


def test_any_callable_transform_gets_image_and_mask(data_root: Path) -> None:
    dataset = SegmentationMNIST(data_root, train=False, transform=v2.RandomHorizontalFlip(p=1.0))
    image, mask = dataset[0]
    plain_image, plain_mask = SegmentationMNIST(data_root, train=False)[0]
    assert torch.equal(image, plain_image.flip(-1)) and torch.equal(mask, plain_mask.flip(-1))


def test_albumentations_transforms_are_called_with_keywords(data_root: Path) -> None:
    albumentations = pytest.importorskip("albumentations")
    from albumentations.pytorch import ToTensorV2

    flip = albumentations.HorizontalFlip(p=1.0)
    image, mask = SegmentationMNIST(data_root, train=False, transform=flip)[0]
    plain_image, plain_mask = SegmentationMNIST(data_root, train=False)[0]
    assert image.shape == (1, 28, 28) and mask.dtype == torch.int64
    assert torch.equal(mask, plain_mask.flip(-1)) and torch.equal(image, plain_image.flip(-1))
    # The reference code's own training transform, verbatim in its arguments but one: the
    # article wrote always_apply=True (apply every time); Albumentations 2.x ignores that
    # argument and would apply the transform to half the images, so p=1.0 says it instead.
    reference = albumentations.Compose(
        [albumentations.Affine(scale=(0.85, 1.15), translate_px=(-2, 2), rotate=(-10, 10), shear=(-15, 15), p=1.0),
         ToTensorV2()]
    )  # fmt: skip
    image, mask = SegmentationMNIST(data_root, train=True, transform=reference)[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert mask.shape == (28, 28) and mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 6}


def test_split_is_five_to_one_disjoint_and_seeded() -> None:
    train, val = split_indices(60000, seed=0)
    assert (len(train), len(val)) == (50000, 10000)
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(60000))
    assert torch.equal(split_indices(60000, seed=0)[0], train)
    assert not torch.equal(split_indices(60000, seed=1)[0], train)
    with pytest.raises(ValueError):
        split_indices(5, seed=0)


def test_batched_loader_without_augmentation_gives_the_datasets_masks(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=False)
    batch_images, batch_masks = next(iter(BatchedLoader(images[:64], labels[:64], batch_size=64)))
    dataset = SegmentationMNIST(data_root, train=False)
    for index in (0, 17, 63):
        image, mask = dataset[index]
        assert torch.equal(batch_images[index], image)
        assert torch.equal(batch_masks[index], mask)


@pytest.mark.parametrize("mask_mode", ["derive", "warp"])
def test_augmented_masks_agree_with_augmented_images(data_root: Path, mask_mode: str) -> None:
    images, labels = load_arrays(data_root, train=True)
    loader = BatchedLoader(images[:500], labels[:500], 250, augment=True, shuffle=True, seed=3, mask_mode=mask_mode)
    for batch_images, batch_masks in loader:
        image_foreground, mask_foreground = batch_images[:, 0] > 0.2, batch_masks > 0
        iou = (image_foreground & mask_foreground).sum() / (image_foreground | mask_foreground).sum()
        if mask_mode == "derive":
            # The warped images are 8-bit again (k/255), their masks the threshold rule exactly,
            # and a pixel of exactly 51/255 = 0.2 is background, as in the unwarped data.
            levels = batch_images * 255
            assert (levels - levels.round()).abs().max() < 1e-4 and torch.equal(image_foreground, mask_foreground)
            at_threshold = levels.round()[:, 0] == 51
            assert at_threshold.any() and not mask_foreground[at_threshold].any()
        else:
            assert iou > 0.85
        # Each foreground pixel carries its own image's digit.
        per_image_classes = torch.where(mask_foreground, batch_masks, 0).amax(dim=(1, 2))
        assert set(per_image_classes.tolist()) <= set(range(1, 11))


def test_batched_loader_is_deterministic_under_a_seed(data_root: Path) -> None:
    images, labels = load_arrays(data_root, train=False)

    def first_batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        loader = BatchedLoader(images[:300], labels[:300], 100, augment=True, shuffle=True, seed=seed)
        return next(iter(loader))

    a, b, c = first_batch(5), first_batch(5), first_batch(6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_batched_loader_covers_every_image_once_per_epoch() -> None:
    # Image i carries its own index in its first two pixels, so a repeated or missing image shows.
    count = 250
    index = torch.arange(count)
    images = torch.zeros(count, 28, 28, dtype=torch.uint8)
    images[:, 0, 0], images[:, 0, 1] = (index % 256).to(torch.uint8), (index // 256).to(torch.uint8)
    loader = BatchedLoader(images, torch.zeros(count, dtype=torch.int64), 100, shuffle=True, seed=0)
    assert len(loader) == 3
    epochs = []
    for _ in range(2):
        batches = [batch_images for batch_images, _ in loader]
        assert [len(batch) for batch in batches] == [100, 100, 50]
        pixels = (torch.cat(batches)[:, 0, 0, :2] * 255).round().to(torch.int64)  # (250, 2)
        seen = pixels[:, 0] + 256 * pixels[:, 1]
        assert torch.equal(seen.sort().values, index)  # each image exactly once
        epochs.append(seen)
    assert not torch.equal(epochs[0], epochs[1])  # in a new order each epoch


def test_batched_loader_rejects_bad_arguments() -> None:
    images, labels = torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        BatchedLoader(images.float(), labels, 2)
    with pytest.raises(ValueError, match="batch_size"):
        BatchedLoader(images, labels, 0)
    with pytest.raises(ValueError, match="mask_mode"):
        BatchedLoader(images, labels, 2, mask_mode="blur")


@pytest.mark.parametrize("dataset", ["mnist", "scenes"])
def test_the_tables_pixel_statistics_are_those_of_the_training_images(data_root: Path, dataset: str) -> None:
    spec = get_dataset(dataset)
    images, labels = load_arrays(data_root, train=True)
    count = 60_000 if dataset == "mnist" else 6_000  # scenes: 2,000 canvases of these digits
    batches = split_batches(dataset, images[:count], labels[:count], "train", batch_size=count)
    pixels = torch.cat([batch for batch, _ in batches])
    assert pixels.mean().item() == pytest.approx(spec.pixel_mean, abs=2e-3)
    assert pixels.std().item() == pytest.approx(spec.pixel_std, abs=2e-3)
