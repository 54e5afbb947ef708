"""Stage 8: use a trained model on your own pictures.

MNIST digits are light strokes on black, about 20 pixels tall in a 28x28 frame. A photo
or scan of handwriting is usually dark ink on light paper, of any size. So before the
network sees it, :func:`prepare_image`:

1. turns it to grayscale in 0..1;
2. inverts it when the paper is lighter than the ink (judged from the border, or forced);
3. stretches the contrast so the paper is 0 and the ink about 1;
4. scales it so that a typical digit is about 20 pixels tall, and pads it to a size the
   U-Net can halve twice.

:func:`predict` then runs the model and brings the mask back to the input's full size;
:func:`describe_mask` reads the digits off the mask, left to right.

Example::

    from PIL import Image
    from mnistseg.inference import load_for_inference
    from mnistseg.predict import predict

    model = load_for_inference("runs/fast")
    mask = predict(Image.open("my_digits.jpg"), model)   # int64 [H, W], 0 = background
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from torch import Tensor, nn

from mnistseg.files import atomic_write_bytes, atomic_write_json
from mnistseg.inference import InferenceModel, as_inference_model

MNIST_DIGIT_HEIGHT = 20.0  # pixels: MNIST centres each digit's 20x20 box in a 28x28 frame
MARGIN = 8  # pixels of background added around the scaled image
MAX_PIXELS = 40_000_000  # larger inputs are refused, not silently slow
MAX_SCALED_PIXELS = 4_000_000  # what the network sees is capped: a speck on a big image must not blow up
INVERT_CHOICES = ("auto", "yes", "no")


class ImageInputError(ValueError):
    """An input that is not an image this module can read and segment."""


class ImageTooLargeError(ImageInputError):
    """An image with more pixels than the caller accepts."""


@dataclass(frozen=True)
class PreparedImage:
    """An image brought to MNIST's conventions, and how to map back.

    Attributes:
        tensor: float32 ``[1, 1, h, w]`` in 0..1, light ink on black, h and w divisible by 4.
        original_size: ``(H, W)`` of the input.
        scaled_size: ``(h0, w0)`` of the scaled image inside the padding.
        inverted: whether the input was inverted (dark ink on light paper).
    """

    tensor: Tensor
    original_size: tuple[int, int]
    scaled_size: tuple[int, int]
    inverted: bool


def to_grayscale(image: Image.Image | np.ndarray | Tensor) -> np.ndarray:
    """Any PIL image, or an array ``[H, W]`` / ``[H, W, C]`` of any numeric dtype, as float32 ``[H, W]`` in 0..1."""
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ImageInputError("the image is empty (0 pixels)")
        if image.width * image.height > MAX_PIXELS:
            raise ImageInputError(
                f"the image has {image.width}x{image.height} pixels; more than {MAX_PIXELS:,} is refused"
            )
        image = image.convert("RGBA").convert("LA") if "A" in image.getbands() else image.convert("L")
        array = np.asarray(image, dtype=np.float32) / 255.0
        if array.ndim == 3:  # gray + alpha: transparent pixels are paper, white
            array = array[..., 0] * array[..., 1] + (1.0 - array[..., 1])
        return array
    array = np.asarray(image.detach().cpu() if isinstance(image, Tensor) else image)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=-1) if array.shape[-1] in (3, 4) else array[..., 0]
    if array.ndim != 2 or 0 in array.shape:
        raise ImageInputError(f"expected an image [H, W] or [H, W, C], got shape {list(np.shape(image))}")
    if array.size > MAX_PIXELS:
        raise ImageInputError(f"the image has {array.size:,} pixels; more than {MAX_PIXELS:,} is refused")
    array = array.astype(np.float32)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        high = np.iinfo(np.asarray(image).dtype).max
        array = array / float(high)
    elif array.max() > 1.0:
        array = array / 255.0
    return np.clip(array, 0.0, 1.0)


def prepare_image(
    image: Image.Image | np.ndarray | Tensor, invert: str = "auto", max_scaled_pixels: int = MAX_SCALED_PIXELS
) -> PreparedImage:
    """Bring an image to MNIST's conventions (see the module docstring).

    Args:
        image: a PIL image or an array; any size, grayscale or colour.
        invert: "auto" (invert when the border is lighter than the middle of the image),
            "yes" or "no".
        max_scaled_pixels: the scaled image has at most this many pixels. Tiny marks would
            otherwise be scaled up until they are 20 pixels tall, whatever that costs; past
            the cap the digits come out smaller than MNIST's.
    """
    if invert not in INVERT_CHOICES:
        raise ValueError(f"invert must be one of {INVERT_CHOICES}, got {invert!r}")
    if max_scaled_pixels < 1:
        raise ValueError(f"max_scaled_pixels must be at least 1, got {max_scaled_pixels}")
    gray = to_grayscale(image)
    height, width = gray.shape
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    inverted = invert == "yes" or (invert == "auto" and bool(np.median(border) > 0.5))
    ink = 1.0 - gray if inverted else gray
    paper, strongest = np.percentile(ink, 50), np.percentile(ink, 99.5)
    ink = np.clip((ink - paper) / max(strongest - paper, 1e-3), 0.0, 1.0)  # paper 0, ink about 1

    labels, count = ndimage.label(ink > 0.5)
    heights = [found[0].stop - found[0].start for found in ndimage.find_objects(labels)] if count else []
    big = [h for h in heights if h >= 0.3 * max(heights)] if heights else []
    digit_height = float(np.median(big)) if big else float(height)
    scale = min(MNIST_DIGIT_HEIGHT / max(digit_height, 1.0), (max_scaled_pixels / (height * width)) ** 0.5)
    scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
    tensor = torch.from_numpy(ink).view(1, 1, height, width)
    tensor = F.interpolate(tensor, size=(scaled_h, scaled_w), mode="bilinear", antialias=scale < 1, align_corners=False)
    padded_h = -(-(scaled_h + 2 * MARGIN) // 4) * 4
    padded_w = -(-(scaled_w + 2 * MARGIN) // 4) * 4
    tensor = F.pad(tensor, (MARGIN, padded_w - scaled_w - MARGIN, MARGIN, padded_h - scaled_h - MARGIN))
    return PreparedImage(tensor.clamp(0, 1).contiguous(), (height, width), (scaled_h, scaled_w), inverted)


@torch.inference_mode()
def predict(
    image: Image.Image | np.ndarray | Tensor, model: nn.Module | InferenceModel, invert: str = "auto"
) -> Tensor:
    """Segment one image of any size.

    Args:
        image: a PIL image or an array ``[H, W]`` / ``[H, W, C]``.
        model: a checkpoint opened by :func:`~mnistseg.inference.load_for_inference` (run
            as its recipe says, test-time shifts included), or a bare trained
            :class:`~mnistseg.model.SimpleUNet` (run plainly, in eval mode).
        invert: "auto", "yes" or "no" (see :func:`prepare_image`).

    Returns:
        int64 ``[H, W]``: class ids at the input's size (0 background, digit + 1).
    """
    return segment(image, model, invert)[0]


@torch.inference_mode()
def segment(
    image: Image.Image | np.ndarray | Tensor,
    model: nn.Module | InferenceModel,
    invert: str = "auto",
    max_scaled_pixels: int = MAX_SCALED_PIXELS,
) -> tuple[Tensor, PreparedImage]:
    """:func:`predict`, also returning how the image was prepared (whether it was inverted, ...)."""
    prepared = prepare_image(image, invert, max_scaled_pixels)
    logits = as_inference_model(model).logits(prepared.tensor).cpu()  # (1, 11, h, w)
    return logits_to_mask(logits, prepared), prepared


def logits_to_mask(logits: Tensor, prepared: PreparedImage) -> Tensor:
    """Crop the padding off ``[1, C, h, w]`` logits and resize them to the input's size; argmax."""
    scaled_h, scaled_w = prepared.scaled_size
    cropped = logits[..., MARGIN : MARGIN + scaled_h, MARGIN : MARGIN + scaled_w]
    resized = F.interpolate(cropped, size=prepared.original_size, mode="bilinear", align_corners=False)
    return resized.argmax(dim=1)[0]


def describe_mask(mask: Tensor, names: Sequence[str], min_area_fraction: float = 0.02) -> dict[str, Any]:
    """Read a predicted mask: the digits left to right, areas per class, and regions.

    A region is a connected patch of foreground (8-connected); its class is the one most
    of its pixels have. Regions smaller than ``min_area_fraction`` of the largest are
    noise and are skipped. Two digits that touch form one region.

    Args:
        mask: int64 ``[H, W]`` class ids.
        names: the class names, background first.

    Returns:
        ``{"digits": [int, ...], "areas": {name: pixels}, "regions": [{"bbox": [x0, y0,
        x1, y1], "class": name, "area": pixels}, ...]}``, regions left to right.
    """
    array = mask.cpu().numpy()
    areas = {names[index]: int((array == index).sum()) for index in range(1, len(names))}
    labels, count = ndimage.label(array > 0, structure=np.ones((3, 3)))
    regions = []
    for number, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        inside = labels[found] == number
        classes = array[found][inside]
        winner = int(np.bincount(classes, minlength=len(names)).argmax())
        regions.append({
            "bbox": [found[1].start, found[0].start, found[1].stop, found[0].stop],
            "class": names[winner],
            "class_id": winner,
            "area": int(inside.sum()),
        })  # fmt: skip
    largest = max((region["area"] for region in regions), default=0)
    regions = [region for region in regions if region["area"] >= min_area_fraction * largest]
    regions.sort(key=lambda region: (region["bbox"][0] + region["bbox"][2]) / 2)
    return {
        "digits": [region["class_id"] - 1 for region in regions],
        "areas": areas,
        "regions": regions,
    }


def read_image(path: Path) -> Image.Image:
    """Open and fully decode an image file.

    Raises:
        ImageInputError: naming why the file cannot be used (not an image, truncated,
            a folder, too large).
    """
    if path.is_dir():
        raise ImageInputError("is a folder, not an image")
    if not path.is_file():
        raise ImageInputError("does not exist")
    return decode_image(path)


def decode_image(source: Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Fully decode an image from a file or a byte stream, refusing more than ``max_pixels``.

    The size is checked from the header, before any pixel is decoded.

    Raises:
        ImageInputError: naming why it cannot be used (not an image, truncated, too large).
    """
    try:
        with Image.open(source) as opened:
            if opened.width * opened.height > max_pixels:
                raise ImageTooLargeError(
                    f"has {opened.width}x{opened.height} pixels; more than {max_pixels:,} is refused"
                )
            opened.load()  # decode now, so a truncated file fails here
            return opened.copy()
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError("is not an image PIL can read") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError(f"is larger than {max_pixels:,} pixels") from None
    except (OSError, SyntaxError, ValueError) as error:  # PIL's words for a damaged file
        raise ImageInputError(f"is damaged or truncated ({error})") from None


def predict_file(
    path: Path, model: nn.Module | InferenceModel, out: Path, names: Sequence[str], invert: str = "auto"
) -> dict[str, Any]:
    """Segment one image file and write ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``<stem>.json`` into ``out``.

    Returns:
        The JSON summary (see :func:`describe_mask`) with ``image``, ``inverted``, ``tta``
        (whether test-time shifts were averaged) and ``files``.
    """
    image = read_image(path)
    model = as_inference_model(model)
    mask, prepared = segment(image, model, invert)
    summary = {"image": str(path), "inverted": prepared.inverted, "tta": model.tta, **describe_mask(mask, names)}
    out.mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path, json_path = (
        out / f"{path.stem}{suffix}" for suffix in ("_mask.png", "_overlay.png", ".json")
    )
    buffer = io.BytesIO()
    Image.fromarray(mask.numpy().astype(np.uint8), mode="L").save(buffer, format="PNG")
    atomic_write_bytes(mask_path, buffer.getvalue())
    from mnistseg.figures import save_prediction_figure  # matplotlib: only when a figure is drawn

    ink = to_grayscale(image)
    ink = 1.0 - ink if prepared.inverted else ink
    digits = "".join(str(digit) for digit in summary["digits"]) or "none"
    save_prediction_figure(torch.from_numpy(ink), mask, overlay_path, names, title=f"{path.name}: digits {digits}")
    summary["files"] = {"mask": str(mask_path), "overlay": str(overlay_path)}
    atomic_write_json(json_path, summary)
    return summary
