"""Stage 1: MNIST as a segmentation data set.

A pixel whose intensity (0..1) is over ``threshold`` gets its digit's label + 1; every
other pixel is background 0. So there are 11 classes and a mask is an int64 ``[H, W]``
tensor of class ids (not one-hot): the form ``nn.CrossEntropyLoss`` expects as target.

Two ways to feed a trainer, with the same split and the same mask rule:

* :class:`SegmentationMNIST`, a per-item ``Dataset`` for teaching and for custom
  transforms (torchvision.transforms.v2 or Albumentations-style), used with a
  ``DataLoader``;
* :class:`BatchedLoader`, which keeps a whole split in memory as one uint8 tensor and
  augments a whole batch in one call (:mod:`mnistseg.augment`): many times faster on a
  CPU, where DataLoader workers compete with the model for the same cores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mnistseg.augment import AFFINE_RANGES, AffineRanges, RandomAffine, augment_batch
from mnistseg.datasets import DEFAULT_THRESHOLD, get_dataset
from mnistseg.scenes import SCENES_PER_DIGIT, TEST_SCENE_SEED, TEST_SCENES, compose

# torchvision is imported only inside the per-item reference path, the one user of its
# transforms: importing it takes about 2 s on a laptop CPU (it loads torch._dynamo), and the
# batched path, `mnistseg predict`, `mnistseg serve` and a mistyped command line need none of it.

SPLITS = ("train", "val", "test")


def class_names(dataset: str = "mnist") -> tuple[str, ...]:
    """The 11 class names of a data set in :data:`mnistseg.datasets.DATASETS`, background first."""
    return get_dataset(dataset).class_names


def masks_from_images(images: Tensor, labels: Tensor, threshold: float = DEFAULT_THRESHOLD) -> Tensor:
    """Turn images and their digit labels into segmentation masks.

    Args:
        images: float ``[N, 1, H, W]`` or ``[N, H, W]`` intensities in 0..1.
        labels: int ``[N]`` digit labels 0..9.
        threshold: a pixel is foreground where its intensity is strictly greater.

    Returns:
        int64 ``[N, H, W]``: ``label + 1`` on foreground pixels, 0 elsewhere.
    """
    if images.dim() == 4:
        images = images[:, 0]  # (N, H, W)
    if images.dim() != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"expected images [N, H, W] and labels [N], got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    foreground = images > threshold
    return torch.where(foreground, labels.view(-1, 1, 1).to(torch.int64) + 1, 0)


def load_arrays(root: str | Path, train: bool = True, dataset: str = "mnist") -> tuple[Tensor, Tensor]:
    """Load a whole split of a data set's raw images as tensors, after checking their SHA-256.

    Args:
        root: data root.
        train: the training split (60k) or the test split (10k).
        dataset: a name in :data:`mnistseg.datasets.DATASETS` (scenes read MNIST's digits).

    Returns:
        ``(images uint8 [N, 28, 28], labels int64 [N])``.
    """
    return get_dataset(dataset).load_arrays(root, train)


def split_indices(num_images: int, seed: int) -> tuple[Tensor, Tensor]:
    """The reference split: a random 5:1 train/val partition of ``range(num_images)``.

    Returns:
        ``(train_indices, val_indices)``, int64, disjoint, together all indices.
    """
    if num_images < 6:
        raise ValueError(f"need at least 6 images to split 5:1, got {num_images}")
    order = torch.randperm(num_images, generator=torch.Generator().manual_seed(seed))
    num_train = num_images * 5 // 6
    return order[:num_train], order[num_train:]


def reference_train_transform(ranges: AffineRanges = AFFINE_RANGES) -> RandomAffine:
    """The article's augmentation as a transform of ``(image, mask)`` for :class:`SegmentationMNIST`.

    The random affine of Albumentations' ``Affine`` as the article configured it (independent
    x/y scale, x- and y-shear, whole-pixel shifts; :mod:`mnistseg.augment`): the image
    warped bilinearly, the mask by nearest neighbour, so class ids stay whole numbers.
    """
    return RandomAffine(ranges)


def _is_albumentations(transform: object) -> bool:
    module = type(transform).__module__ or ""
    return module.split(".")[0] == "albumentations"


class SegmentationMNIST(Dataset):
    """MNIST (or Fashion-MNIST) as an 11-class semantic segmentation data set.

    Composes ``torchvision.datasets.MNIST``: the images and labels are torchvision's,
    the masks are made from them by :func:`masks_from_images`.

    Args:
        root: data root holding ``MNIST/raw`` (``mnistseg data`` writes it).
        threshold: intensity above which a pixel is foreground.
        train: the 60k training images if True, else the 10k test images.
        transform: applied to image and mask together. A torchvision v2 transform (or
            any callable) is called as ``transform(image, mask)`` with
            ``tv_tensors.Image`` and ``tv_tensors.Mask``; an Albumentations transform is
            called as ``transform(image=array, mask=array)``.
        dataset: a name in :data:`mnistseg.datasets.DATASETS` with images of its own
            ("mnist" or "fashion-mnist").

    An item is ``(image float32 [1, 28, 28] in 0..1, mask int64 [28, 28])``.
    """

    def __init__(
        self,
        root: str | Path,
        threshold: float = DEFAULT_THRESHOLD,
        train: bool = True,
        transform: Callable[..., Any] | None = None,
        dataset: str = "mnist",
    ) -> None:
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        spec = get_dataset(dataset)
        if spec.scenes:
            raise ValueError(f"{dataset!r} is generated in memory (mnistseg.scenes), not a per-item data set")
        self.dataset_name = dataset
        self.images, self.labels = spec.load_arrays(root, train)  # uint8 [N, 28, 28], int64 [N]
        self.threshold = threshold
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.images[index].to(torch.float32).div(255.0).unsqueeze(0)  # (1, 28, 28)
        label = self.labels[index].view(1)
        mask = masks_from_images(image, label, self.threshold)[0]  # (28, 28)
        if self.transform is None:
            return image, mask
        if _is_albumentations(self.transform):
            return self._apply_albumentations(image, mask)
        from torchvision import tv_tensors  # imported once, in the first item

        image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(Tensor), mask.as_subclass(Tensor).to(torch.int64)

    def _apply_albumentations(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        out = self.transform(image=image[0].numpy(), mask=mask.numpy())
        image_out = torch.as_tensor(out["image"], dtype=torch.float32)
        if image_out.dim() == 2:
            image_out = image_out.unsqueeze(0)  # (H, W) -> (1, H, W)
        elif image_out.dim() == 3 and image_out.shape[-1] == 1:
            image_out = image_out.permute(2, 0, 1)  # (H, W, 1) -> (1, H, W)
        return image_out.contiguous(), torch.as_tensor(out["mask"]).to(torch.int64)


class BatchedLoader:
    """Yields ``(images, masks)`` batches from a split held in memory as one tensor.

    Each epoch shuffles (if asked), and augments each batch in one call. Masks are made
    after augmentation from the augmented image (``mask_mode="derive"``) or by warping
    the original mask with nearest-neighbour sampling (``"warp"``, as the reference).
    Derive trains far better (see ``Recipe.mask_mode``): the mask then obeys the same
    threshold rule as every test mask.

    Args:
        images: uint8 ``[N, H, W]``; moved to ``device`` once.
        labels: int64 ``[N]``.
        batch_size: images per batch; the last batch may be smaller.
        threshold: the foreground threshold of the mask rule.
        augment: apply the random affine of :data:`mnistseg.augment.AFFINE_RANGES`.
        shuffle: draw a new order every epoch.
        seed: seeds the order and the augmentation.
        device: where batches are made.
        mask_mode: "derive" or "warp".
        rank: this process's shard under torchrun (0 for one process).
        world_size: number of shards. Every rank draws the same order from ``seed`` and
            takes every ``world_size``-th image from position ``rank``; when shuffling
            (training), the order is first cut to a multiple of ``world_size`` so all
            ranks take the same number of steps. Without shuffling (evaluation) nothing
            is dropped or repeated: the shards together are the split, once.
        masks: int64 ``[N, H, W]`` masks made elsewhere (multi-digit scenes), used as they
            are instead of the threshold rule; such batches are not augmented.

    Batches: images float32 ``[B, 1, H, W]`` in 0..1, masks int64 ``[B, H, W]``.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        threshold: float = DEFAULT_THRESHOLD,
        augment: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        device: torch.device | str = "cpu",
        mask_mode: str = "derive",
        rank: int = 0,
        world_size: int = 1,
        masks: Tensor | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 3:
            raise ValueError(f"images must be uint8 [N, H, W], got {images.dtype} {tuple(images.shape)}")
        if labels.shape != images.shape[:1]:
            raise ValueError(f"labels must be [N] = [{images.shape[0]}], got {tuple(labels.shape)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if mask_mode not in ("derive", "warp"):
            raise ValueError(f"mask_mode must be 'derive' or 'warp', got {mask_mode!r}")
        if masks is not None and (masks.shape != images.shape or augment):
            raise ValueError(f"masks must be [N, H, W] = {list(images.shape)} and come without augment")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank} of {world_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device).unsqueeze(1)  # (N, 1, H, W), uint8
        self.labels = labels.to(self.device)
        self.masks = None if masks is None else masks.to(self.device)
        self.batch_size = batch_size
        self.threshold = threshold
        self.augment = augment
        self.shuffle = shuffle
        self.mask_mode = mask_mode
        self.rank, self.world_size = rank, world_size
        # One generator for the order, the same on every rank; one for the augmentation, per rank.
        self.order_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed + 1_000_003 * (rank + 1))

    def _shard_size(self) -> int:
        count = len(self.labels)
        if self.shuffle:
            return count // self.world_size
        return len(range(self.rank, count, self.world_size))

    def __len__(self) -> int:
        return -(-self._shard_size() // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        count = len(self.labels)
        if self.shuffle:
            order = torch.randperm(count, generator=self.order_generator, device=self.device)
            order = order[: count - count % self.world_size]
        else:
            order = torch.arange(count, device=self.device)
        order = order[self.rank :: self.world_size]  # (shard,)
        for start in range(0, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            images = self.images[index].to(torch.float32).div_(255.0)  # (B, 1, H, W)
            labels = self.labels[index]
            if self.masks is not None:
                yield images, self.masks[index]
            elif not self.augment:
                yield images, masks_from_images(images, labels, self.threshold)
            elif self.mask_mode == "derive":
                # Back to 8-bit levels (k/255), as every real image is. Bilinear warping makes
                # in-between intensities; on those the network learns the threshold so exactly
                # that a pixel of exactly 51/255 = 0.2 (about 4,000 in 10,000 digits) is a coin flip.
                images = augment_batch(images, generator=self.generator).mul_(255).round_().div_(255)
                yield images, masks_from_images(images, labels, self.threshold)
            else:
                masks = masks_from_images(images, labels, self.threshold)
                images, masks = augment_batch(images, masks, generator=self.generator)
                yield images, masks


class FreshCanvases(BatchedLoader):
    """Training canvases of several digits (:mod:`mnistseg.scenes`), composed anew every epoch.

    This is the augmentation of a data set of generated canvases: each epoch places other
    digits, in other numbers and at other places, each digit first warped by its own draw of
    the random affine (and put back on 8-bit levels; its mask follows the threshold rule on
    the warped digit, as ``mask_mode="derive"``). Each epoch's seed is drawn from the order
    generator, the same on every rank and restored on resume, so a resumed run composes the
    canvases an uninterrupted one would.

    Args:
        layout: "scattered" or "rows" (:func:`mnistseg.scenes.compose`).
        digits: uint8 ``[N, 28, 28]``, the split's digits to place.
        digit_labels: int64 ``[N]``.
        count: canvases per epoch.
        size: canvas height and width.
        other arguments: as :class:`BatchedLoader` (always shuffled).

    Batches: images float32 ``[B, 1, size, size]`` in 0..1, masks int64 ``[B, size, size]``.
    """

    def __init__(
        self,
        layout: str,
        digits: Tensor,
        digit_labels: Tensor,
        count: int,
        size: int,
        batch_size: int,
        threshold: float = DEFAULT_THRESHOLD,
        seed: int = 0,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        placeholder = torch.zeros(count, size, size, dtype=torch.uint8)  # replaced at the start of each epoch
        super().__init__(placeholder, torch.zeros(count, dtype=torch.int64), batch_size, threshold, shuffle=True,
                         seed=seed, device=device, rank=rank, world_size=world_size, masks=placeholder)  # fmt: skip
        self.layout, self.size = layout, size
        self.digits = digits.to(self.device).unsqueeze(1)  # (N, 1, 28, 28), uint8
        self.digit_labels = digit_labels

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        seed = int(torch.randint(2**31 - 1, (1,), generator=self.order_generator, device=self.device))
        warp_generator = torch.Generator(device=self.device).manual_seed(seed)  # the same digits on every rank
        digits = augment_batch(self.digits.to(torch.float32).div_(255.0), generator=warp_generator)
        digits = digits.mul_(255).round_().to(torch.uint8)[:, 0].cpu()  # (N, 28, 28)
        canvases, masks = compose(self.layout, digits, self.digit_labels, len(self.labels), seed, self.threshold,
                                  self.size)  # fmt: skip
        self.images, self.masks = canvases.to(self.device).unsqueeze(1), masks.to(self.device)
        yield from super().__iter__()


def split_batches(
    dataset: str,
    images: Tensor,
    labels: Tensor,
    split: str,
    batch_size: int,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    augment: bool = False,
    mask_mode: str = "derive",
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> BatchedLoader:
    """The in-memory batches of one split of a data set: what training and evaluation both iterate.

    For a data set of generated scenes (:mod:`mnistseg.scenes`) the digits given are placed
    on canvases first: a third as many scenes as digits for training and validation (new
    ones for each ``seed``), the fixed :data:`~mnistseg.scenes.TEST_SCENES` for the test split;
    augmented training canvases are composed anew every epoch (:class:`FreshCanvases`).

    Args:
        dataset: a name in :data:`mnistseg.datasets.DATASETS`.
        images: uint8 ``[N, 28, 28]`` of that split (for scenes: the digits to place).
        labels: int64 ``[N]``.
        split: "train" (shuffled every epoch, augmented if asked), "val" or "test".
        batch_size: images per batch (per process under torchrun).
        threshold: the foreground threshold of the mask rule.
        seed: the run's seed; it seeds the order, the augmentation and the scenes.
        augment: apply the random affine to the training split.
        mask_mode: "derive" or "warp" (see :class:`BatchedLoader`).
        device: where batches are made.
        rank: this process's shard under torchrun.
        world_size: number of shards.

    Raises:
        ValueError: for an unknown split or data set.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    spec = get_dataset(dataset)
    training = split == "train"
    common = {"seed": seed + 1, "device": device, "rank": rank, "world_size": world_size}
    if not spec.scenes:
        return BatchedLoader(images, labels, batch_size, threshold, augment=augment and training,
                             mask_mode=mask_mode, shuffle=training, **common)  # fmt: skip
    count = TEST_SCENES if split == "test" else max(1, round(len(labels) * SCENES_PER_DIGIT))
    if training and augment:
        return FreshCanvases(spec.layout, images, labels, count, spec.image_size, batch_size, threshold, **common)
    scene_seed = {"train": seed + 11, "val": seed + 12, "test": TEST_SCENE_SEED}[split]
    scenes, masks = compose(spec.layout, images, labels, count, scene_seed, threshold, size=spec.image_size)
    no_labels = torch.zeros(count, dtype=torch.int64)  # the masks carry the classes
    return BatchedLoader(scenes, no_labels, batch_size, threshold, masks=masks, shuffle=training, **common)
