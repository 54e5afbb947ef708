"""Stage 4: the pictures. One fixed colour per class id in every figure.

Background is black; digits 0..9 (class ids 1..10) take matplotlib's tab10 colours in
order, so "the 3s are red" holds in every figure of the package.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

# Figure objects, not pyplot: no global backend or figure state, works headless, and a
# notebook's own inline backend is left alone.
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor

from mnistseg.data import SegmentationMNIST, class_names, reference_train_transform
from mnistseg.datasets import CLASS_COLORS, TAB10
from mnistseg.files import atomic_write_bytes

WRONG_COLOR = (1.0, 1.0, 1.0)  # pixels whose predicted class is not the true one: white, no class has it


def class_color_table() -> Tensor:
    """float32 ``[11, 3]`` RGB in 0..1, row = class id."""
    return torch.tensor(CLASS_COLORS, dtype=torch.float32)


def overlay_masks(images: Tensor, masks: Tensor, alpha: float = 0.65, truth: Tensor | None = None) -> np.ndarray:
    """Blend class colours over grayscale images where the mask is foreground.

    Args:
        images: float ``[N, 1, H, W]`` in 0..1.
        masks: int64 ``[N, H, W]`` class ids 0..10.
        alpha: weight of the class colour on foreground pixels.
        truth: int64 ``[N, H, W]``, the true masks: pixels where ``masks`` differs are
            painted :data:`WRONG_COLOR`.

    Returns:
        float32 numpy ``[N, H, W, 3]`` RGB in 0..1.
    """
    if images.dim() != 4 or masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"expected images [N, 1, H, W] and masks [N, H, W], got {list(images.shape)}, {list(masks.shape)}"
        )
    gray = images.detach().float().cpu()[:, 0].clamp(0, 1).unsqueeze(-1).expand(-1, -1, -1, 3)  # (N, H, W, 3)
    colors = class_color_table()[masks.detach().cpu().clamp(0, len(CLASS_COLORS) - 1)]  # (N, H, W, 3)
    foreground = (masks.detach().cpu() > 0).unsqueeze(-1)
    blended = torch.where(foreground, (1 - alpha) * gray + alpha * colors, gray)
    if truth is not None:
        wrong = (masks.detach().cpu() != truth.detach().cpu()).unsqueeze(-1)
        blended = torch.where(wrong, torch.tensor(WRONG_COLOR), blended)
    return blended.numpy()


def legend_handles(names: Sequence[str], class_ids: Iterable[int] | None = None) -> list[Patch]:
    """One coloured patch per foreground class (names[0] is the background).

    Args:
        names: the class names, background first.
        class_ids: only these classes (e.g. those present in a mask); default all foreground classes.
    """
    ids = range(1, len(names)) if class_ids is None else sorted(set(class_ids) - {0})
    return [Patch(color=CLASS_COLORS[index], label=names[index]) for index in ids]


def save_figure(figure: Figure, path: str | Path, dpi: int = 100) -> None:
    """Render a figure to PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())


def save_overlay_grid(
    images: Tensor,
    masks: Tensor,
    path: str | Path,
    names: Sequence[str],
    title: str = "",
    columns: int = 10,
    truth: Tensor | None = None,
) -> None:
    """A grid of images with their masks overlaid, and a legend of the classes.

    Args:
        images: float ``[N, 1, H, W]`` in 0..1.
        masks: int64 ``[N, H, W]`` (true or predicted).
        path: PNG file to write.
        names: the 11 class names, background first.
        title: figure title.
        columns: images per row.
        truth: the true masks ``[N, H, W]``; if given, wrong pixels are painted white.
    """
    pictures = overlay_masks(images, masks, truth=truth)  # (N, H, W, 3)
    count, height, width, _ = pictures.shape
    rows = -(-count // columns)
    # One picture of all the tiles, 2 white pixels apart: one imshow draws in a tenth of the
    # time of a hundred subplots (about 1.3 s), which the fast preset's run would notice.
    gap = 2
    mosaic = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), dtype=np.float32)
    for index, picture in enumerate(pictures):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        mosaic[top : top + height, left : left + width] = picture
    figure = Figure(figsize=(columns * 1.0, rows * 1.0 + 0.9))
    axis = figure.subplots()
    axis.axis("off")
    axis.imshow(mosaic, interpolation="nearest")
    handles = legend_handles(names) + ([wrong_pixels_handle()] if truth is not None else [])
    figure.legend(handles=handles, loc="lower center", ncol=min(11, len(handles)), frameon=False)
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.5 / (rows + 0.9), top=1 - 0.4 / (rows + 0.9))
    save_figure(figure, path)


def wrong_pixels_handle() -> Patch:
    """The legend entry for :data:`WRONG_COLOR`."""
    return Patch(facecolor=WRONG_COLOR, edgecolor="black", label="wrong")


def save_confusion_matrix(confusion: Tensor, names: Sequence[str], path: str | Path, title: str = "") -> None:
    """Which class each true class's pixels were given, as shares of the true class's pixels.

    Args:
        confusion: int64 ``[C, C]``; ``[t, p]`` counts pixels of true class t predicted p.
        names: the C class names, background first.
        path: PNG file to write.
        title: figure title.
    """
    from matplotlib.colors import LogNorm

    counts = confusion.double().cpu()
    shares = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).numpy()  # rows sum to 1
    size = len(names)
    figure = Figure(figsize=(0.62 * size + 1.6, 0.55 * size + 1.2))
    axis = figure.subplots()
    # A log scale: the diagonal holds ~99%, the confusions that matter 0.01%-1%.
    image = axis.imshow(np.maximum(shares, 1e-5), cmap="Blues", norm=LogNorm(vmin=1e-4, vmax=1.0))
    for true_class in range(size):
        for predicted_class in range(size):
            share = shares[true_class, predicted_class]
            if counts[true_class, predicted_class] == 0:
                continue
            text = f"{100 * share:.1f}" if share >= 0.001 else "<.1"
            axis.text(predicted_class, true_class, text, ha="center", va="center", fontsize=7,
                      color="white" if share > 0.1 else "black")  # fmt: skip
    axis.set_xticks(range(size), names, rotation=90)
    axis.set_yticks(range(size), names)
    axis.set(xlabel="predicted class", ylabel="true class", title=title or "Pixels of each true class, % by prediction")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of the true class's pixels")
    save_figure(figure, path, dpi=110)


def save_hardest_images(
    images: Tensor, truth: Tensor, predicted: Tensor, captions: Sequence[str], path: str | Path,
    names: Sequence[str], title: str = "",
) -> None:  # fmt: skip
    """Images side by side: the true mask above, the predicted mask below.

    Args:
        images: float ``[N, 1, H, W]`` in 0..1.
        truth: int64 ``[N, H, W]`` true masks.
        predicted: int64 ``[N, H, W]`` predicted masks.
        captions: one short line per image (e.g. its IoU).
        path: PNG file to write.
        names: the class names, background first.
        title: figure title.
    """
    columns = len(images)
    true_pictures = overlay_masks(images, truth)
    predicted_pictures = overlay_masks(images, predicted)
    figure = Figure(figsize=(columns * 1.05 + 0.6, 3.4))
    axes = figure.subplots(2, columns, squeeze=False)
    for column in range(columns):
        axes[0, column].imshow(true_pictures[column], interpolation="nearest")
        axes[1, column].imshow(predicted_pictures[column], interpolation="nearest")
        axes[0, column].set_title(captions[column], fontsize=7)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel("truth")
    axes[1, 0].set_ylabel("predicted")
    present = torch.cat([truth.unique(), predicted.unique()]).tolist()
    handles = legend_handles(names, present)
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    if title:
        figure.suptitle(title)
    figure.subplots_adjust(wspace=0.05, hspace=0.08, bottom=0.16, top=0.8)
    save_figure(figure, path)


def save_learning_curve(history: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Training loss per batch, validation loss and IoU per epoch, side by side.

    Args:
        history: one dict per epoch with ``epoch``, ``train_loss``, ``val_loss``, ``iou``,
            and ``batch_losses`` (the loss of each step; rows without it show the epoch mean).
        path: PNG file to write.
    """
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    loss_axis, iou_axis = figure.subplots(1, 2)
    steps, losses = [], []
    for row in history:  # step i of n in epoch e sits at x = e - 1 + (i + 1) / n
        batch_losses = row.get("batch_losses") or [row["train_loss"]]
        steps += [row["epoch"] - 1 + (step + 1) / len(batch_losses) for step in range(len(batch_losses))]
        losses += batch_losses
    loss_axis.plot(steps, losses, color=TAB10[0], alpha=0.35, linewidth=0.8, label="train, each batch")
    window = max(1, len(losses) // 50)  # a running mean over ~2% of the steps shows the trend
    if window > 1:
        trend = np.convolve(losses, np.ones(window) / window, mode="valid")
        loss_axis.plot(steps[window - 1 :], trend, color=TAB10[0], label=f"train, mean of {window} batches")
    loss_axis.plot(epochs, [row["val_loss"] for row in history], marker="o", color=TAB10[1], label="validation")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss", xlim=(0, max(epochs)))
    loss_axis.legend()
    iou_axis.plot(epochs, [row["iou"] for row in history], marker="o", color=TAB10[2])
    iou_axis.set(xlabel="epoch", ylabel="IoU (foreground, micro)", title="Validation IoU at the end of each epoch",
                 xlim=(0.5, max(epochs) + 0.5))  # fmt: skip
    for axis in (loss_axis, iou_axis):
        axis.grid(alpha=0.3)
    if max(epochs) > 1:
        loss_axis.xaxis.get_major_locator().set_params(integer=True)
    if len(epochs) <= 20:
        iou_axis.set_xticks(epochs)
    else:
        iou_axis.xaxis.get_major_locator().set_params(integer=True)
    save_figure(figure, path)


def save_augmentation_figure(
    image: Tensor, mask: Tensor, augmented: Sequence[tuple[Tensor, Tensor]], path: str | Path, names: Sequence[str]
) -> None:
    """One image augmented many times: each column shows an image above its mask.

    Args:
        image: float ``[1, H, W]``, the original.
        mask: int64 ``[H, W]``, its mask.
        augmented: ``(image [1, H, W], mask [H, W])`` pairs drawn by the augmentation.
        path: PNG file to write.
        names: the 11 class names, background first.
    """
    pairs = [(image, mask), *augmented]
    figure = Figure(figsize=(len(pairs) * 1.1, 2.8))
    axes = figure.subplots(2, len(pairs), squeeze=False)
    for column, (picture, labels) in enumerate(pairs):
        axes[0, column].imshow(picture[0].cpu().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        colored = class_color_table()[labels.cpu()].numpy()
        axes[1, column].imshow(colored, interpolation="nearest")
        axes[0, column].set_title("original" if column == 0 else f"#{column}", fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0, 0].set_ylabel("image")
    axes[1, 0].set_ylabel("mask")
    present = torch.cat([labels.unique() for _, labels in pairs]).tolist()
    figure.legend(handles=legend_handles(names, present), loc="lower center", frameon=False)
    figure.suptitle("Random affine: image and mask move together")
    save_figure(figure, path)


def draw_dataset_figures(root: str | Path, out: str | Path, dataset: str = "mnist", seed: int = 0) -> list[Path]:
    """Write ``dataset_overlay.png`` (training images with their true masks) and
    ``augmentation.png`` (one image through the reference augmentation 9 times).

    Returns:
        The paths written.
    """
    out = Path(out)
    names = class_names(dataset)
    plain = SegmentationMNIST(root, train=True, dataset=dataset)
    images, masks = zip(*(plain[index] for index in range(50)), strict=True)
    overlay_path = out / "dataset_overlay.png"
    save_overlay_grid(
        torch.stack(images), torch.stack(masks), overlay_path, names,
        title="Training images with their masks (threshold 0.2, class = digit + 1)",
    )  # fmt: skip

    torch.manual_seed(seed)  # torchvision's v2 transforms draw from torch's global generator
    augmented = SegmentationMNIST(root, train=True, transform=reference_train_transform(), dataset=dataset)
    augmentation_path = out / "augmentation.png"
    save_augmentation_figure(*plain[0], [augmented[0] for _ in range(9)], augmentation_path, names)
    return [overlay_path, augmentation_path]


def save_prediction_figure(
    picture: np.ndarray, mask: Tensor, path: str | Path, names: Sequence[str], title: str = "", alpha: float = 0.65
) -> None:
    """A picture of any size, as the user gave it, with the predicted classes' colours over it, and a legend.

    Args:
        picture: float ``[H, W, 3]`` RGB in 0..1, the input as it is (its own polarity and colours).
        mask: int64 ``[H, W]`` class ids.
        path: PNG file to write.
        names: the class names, background first.
        title: figure title.
        alpha: weight of the class colour on the mask's foreground pixels.
    """
    if picture.shape != (*mask.shape, 3):
        raise ValueError(
            f"expected a picture [H, W, 3] of the mask's size {list(mask.shape)}, got {list(picture.shape)}"
        )
    colors = class_color_table()[mask.cpu()].numpy()  # (H, W, 3)
    foreground = (mask.cpu().numpy() > 0)[..., None]
    picture = np.where(foreground, (1 - alpha) * picture + alpha * colors, picture)
    height, width = mask.shape
    scale = 8.0 / max(height, width)
    figure = Figure(figsize=(max(width * scale, 3.0), max(height * scale, 2.0) + 0.8))
    axis = figure.subplots()
    axis.imshow(picture, interpolation="nearest")
    axis.axis("off")
    handles = legend_handles(names, mask.unique().tolist())
    if handles:
        figure.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), frameon=False)
    if title:
        axis.set_title(title)
    save_figure(figure, path)
