"""Stage 8, first half: bring a user's picture to MNIST's conventions before the network sees it.

MNIST digits are light strokes on black, about 20 pixels tall in a 28x28 frame. A photo
or scan of handwriting is usually dark ink on light paper, of any size, drawn with any pen.
So :func:`prepare_image`:

1. turns it to grayscale in 0..1;
2. inverts it when the paper is lighter than the ink (judged from the border, or forced);
3. stretches the contrast so the paper is 0 and the ink about 1;
4. drops specks: patches of ink far smaller than a digit;
5. brings the pen to MNIST's: MNIST strokes are about 12% of a digit's height (2-3 of 20
   pixels), so strokes much thinner are thickened and much thicker ones thinned, their width
   estimated from a distance transform (thick ones are redrawn along their centre lines);
6. scales it so that a typical digit is about 20 pixels tall, and pads it to a size the
   U-Net can halve twice.

:func:`read_image` and :func:`decode_image` open image files and bytes, refusing what is
not an image or is too large. :mod:`mnistseg.predict` runs the model on the result.

SciPy is imported inside the functions that use it, as in :mod:`mnistseg.postprocess`:
``import mnistseg``, and so every ``mnistseg train``, reaches this module and never calls
them, and SciPy takes a noticeable share of a ``fast`` run to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

MNIST_DIGIT_HEIGHT = 20.0  # pixels: MNIST centres each digit's 20x20 box in a 28x28 frame
MARGIN = 8  # pixels of background added around the scaled image
MAX_PIXELS = 40_000_000  # larger inputs are refused, not silently slow
MAX_SCALED_PIXELS = 4_000_000  # what the network sees is capped: a speck on a big image must not blow up
INVERT_CHOICES = ("auto", "yes", "no")
MNIST_STROKE_SHARE = 0.12  # MNIST's strokes (ink over 0.5) are about 12% of a digit's height (median)
STROKE_TOLERANCE = (0.75, 1.6)  # strokes within these multiples of MNIST's are left as drawn
SPECK_SHARE = 0.15  # ink narrower and shorter than this share of a digit's height is a speck
# Thick strokes are thinned where MNIST's pen would be this many pixels wide (a digit about 67
# pixels tall, 3.3 times what the network sees): thinning peels one pixel a pass, and a marker
# on a 12-megapixel photo took 66 s at the photo's own resolution, 1 s at this one. Of 30
# markers (every digit, pens 25-35% of its height) 24 read right here and at 10 pixels, 22 at
# 6, 20 at full resolution (one exploratory run, the bundled model): 8 is the cheaper of the two.
THINNING_PEN = 8.0


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
        stroke_width: the pen's estimated width in input pixels (0 without ink).
        stroke_change: "thickened", "thinned" or "kept" (see :data:`MNIST_STROKE_SHARE`).
        specks_removed: patches of ink dropped as specks.
        strokes: bool ``[H, W]``: the input's own ink (specks removed), onto which the mask
            is put when the strokes were thickened; None otherwise.
    """

    tensor: Tensor
    original_size: tuple[int, int]
    scaled_size: tuple[int, int]
    inverted: bool
    stroke_width: float = 0.0
    stroke_change: str = "kept"
    specks_removed: int = 0
    strokes: np.ndarray | None = None


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
    image: Image.Image | np.ndarray | Tensor,
    invert: str = "auto",
    max_scaled_pixels: int = MAX_SCALED_PIXELS,
    normalise_pen: bool = True,
) -> PreparedImage:
    """Bring an image to MNIST's conventions (see the module docstring).

    Args:
        image: a PIL image or an array; any size, grayscale or colour.
        invert: "auto" (invert when the border is lighter than the middle of the image),
            "yes" or "no".
        max_scaled_pixels: the scaled image has at most this many pixels. Tiny marks would
            otherwise be scaled up until they are 20 pixels tall, whatever that costs; past
            the cap the digits come out smaller than MNIST's.
        normalise_pen: bring the strokes' width towards MNIST's (:func:`normalise_strokes`);
            False leaves them as drawn (for comparison).
    """
    from scipy import ndimage  # see the module's note on SciPy

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

    labels, count = ndimage.label(ink > 0.5, structure=np.ones((3, 3)))
    boxes = ndimage.find_objects(labels) if count else []
    heights = [found[0].stop - found[0].start for found in boxes]
    big = [h for h in heights if h >= 0.3 * max(heights)] if heights else []
    digit_height = float(np.median(big)) if big else float(height)
    ink, specks_removed = remove_specks(ink, labels, boxes, SPECK_SHARE * digit_height)
    own_strokes = ink > 0.25
    if normalise_pen:
        ink, pen_width, change = normalise_strokes(ink, MNIST_STROKE_SHARE * digit_height)
    else:
        pen_width, change = stroke_width(ink > 0.5), "kept"
    scale = min(MNIST_DIGIT_HEIGHT / max(digit_height, 1.0), (max_scaled_pixels / (height * width)) ** 0.5)
    scaled_h, scaled_w = max(1, round(height * scale)), max(1, round(width * scale))
    tensor = torch.from_numpy(resize(ink, size=(scaled_h, scaled_w))).view(1, 1, scaled_h, scaled_w)
    padded_h = -(-(scaled_h + 2 * MARGIN) // 4) * 4
    padded_w = -(-(scaled_w + 2 * MARGIN) // 4) * 4
    tensor = F.pad(tensor, (MARGIN, padded_w - scaled_w - MARGIN, MARGIN, padded_h - scaled_h - MARGIN))
    return PreparedImage(
        tensor.clamp(0, 1).contiguous(), (height, width), (scaled_h, scaled_w), inverted,
        stroke_width=pen_width, stroke_change=change, specks_removed=specks_removed,
        strokes=own_strokes if change == "thickened" else None,
    )  # fmt: skip


def remove_specks(ink: np.ndarray, labels: np.ndarray, boxes: list, size: float) -> tuple[np.ndarray, int]:
    """Clear the patches of ink whose bounding box is smaller than ``size`` both ways.

    Args:
        ink: float32 ``[H, W]`` in 0..1, light ink on black.
        labels: the patches of ``ink > 0.5`` (``ndimage.label``), ``boxes`` their slices.
        size: pixels; a digit's height times :data:`SPECK_SHARE`.

    Returns:
        ``(ink without the specks, how many were removed)``; their faint rims go too.
    """
    from scipy import ndimage  # see the module's note on SciPy

    specks = [
        number for number, box in enumerate(boxes, start=1)
        if box is not None and box[0].stop - box[0].start < size and box[1].stop - box[1].start < size
    ]  # fmt: skip
    if not specks:
        return ink, 0
    speck_pixels = ndimage.binary_dilation(np.isin(labels, specks), iterations=2)
    return np.where(speck_pixels, 0.0, ink).astype(np.float32), len(specks)


def stroke_width(strokes: np.ndarray) -> float:
    """A pen's width in pixels: twice the distance from the strokes' middle lines to their edges.

    Args:
        strokes: bool ``[H, W]``, the ink.

    Returns:
        The median over the ridge of the distance transform (pixels at least as far from the
        background as their 8 neighbours), as ``2 d - 1``; 0.0 without ink.
    """
    from scipy import ndimage  # see the module's note on SciPy

    inside = ndimage.distance_transform_edt(strokes)
    ridge = strokes & (inside == ndimage.maximum_filter(inside, size=3))
    return float(2 * np.median(inside[ridge]) - 1) if ridge.any() else 0.0


def normalise_strokes(ink: np.ndarray, target: float) -> tuple[np.ndarray, float, str]:
    """Thicken or thin the strokes towards ``target`` pixels wide, if they are far from it.

    Args:
        ink: float32 ``[H, W]`` in 0..1, light ink on black.
        target: the width MNIST's strokes would have at this size (pixels).

    Returns:
        ``(ink, the width as drawn, "thickened" | "thinned" | "kept")``. Thickening grows
        the strokes by the distance transform; thinning redraws their centre lines
        (:func:`centre_lines`) with a pen ``target`` wide; both with a one-pixel soft edge.
    """
    from scipy import ndimage  # see the module's note on SciPy

    strokes = ink > 0.5
    width = stroke_width(strokes)
    low, high = STROKE_TOLERANCE
    if width == 0.0 or low * target <= width <= high * target:
        return ink, width, "kept"
    if width < low * target:
        outside = ndimage.distance_transform_edt(~strokes)  # 1 next to the ink
        grown = np.clip((target - width) / 2 + 1 - outside, 0.0, 1.0)
        return np.maximum(ink, grown).astype(np.float32), width, "thickened"
    # Thinned by redrawing the strokes' centre lines with MNIST's pen: shaving every edge by
    # the same amount would erase the thin parts of a pen with thick and thin strokes (a bold
    # serif 0's top and bottom), and a 0 would fall apart into two 1s. Done at a resolution
    # where that pen is THINNING_PEN pixels wide, then brought back to the input's size.
    factor = min(1.0, THINNING_PEN / target)
    small = resize(strokes.astype(np.float32), factor) > 0.5 if factor < 1.0 else strokes
    lines = centre_lines(small)
    redrawn = np.clip(target * factor / 2 + 0.5 - ndimage.distance_transform_edt(~lines), 0.0, 1.0)
    if factor < 1.0:
        redrawn = resize(redrawn.astype(np.float32), size=strokes.shape)
    return redrawn.astype(np.float32), width, "thinned"


def resize(image: np.ndarray, factor: float = 1.0, size: tuple[int, int] | None = None) -> np.ndarray:
    """float32 ``[H, W]`` resized bilinearly (antialiased when shrinking), by ``factor`` or to ``size``."""
    height, width = image.shape
    size = size or (max(1, round(height * factor)), max(1, round(width * factor)))
    shrinking = size[0] < height or size[1] < width
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).view(1, 1, height, width)
    resized = F.interpolate(tensor, size=size, mode="bilinear", antialias=shrinking, align_corners=False)
    return resized[0, 0].numpy()


def centre_lines(strokes: np.ndarray) -> np.ndarray:
    """The strokes thinned to lines one pixel wide, each stroke still one piece (Zhang and Suen, 1984).

    Peels the strokes' edge pixels in two alternating passes (south-east, then north-west)
    until none can go: a pixel goes when it has 2 to 6 ink neighbours, exactly one change from
    paper to ink around it (removing it cannot split a stroke), and is not on the inner side
    of a corner the pass would cut.

    Args:
        strokes: bool ``[H, W]``, the ink.

    Returns:
        bool ``[H, W]``, a subset of ``strokes``.
    """
    image = np.pad(strokes, 1).astype(np.uint8)
    # The 8 neighbours clockwise from north: P2..P9 in the paper's names.
    around = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
    changed = True
    while changed:
        changed = False
        for first_pass in (True, False):
            n = [np.roll(image, (-dy, -dx), axis=(0, 1)) for dy, dx in around]
            neighbours = sum(n)
            changes = sum((n[i] == 0) & (n[(i + 1) % 8] == 1) for i in range(8))
            if first_pass:  # not P2*P4*P6, not P4*P6*P8: the south-east edge
                corner = (n[0] & n[2] & n[4]) | (n[2] & n[4] & n[6])
            else:  # not P2*P4*P8, not P2*P6*P8: the north-west edge
                corner = (n[0] & n[2] & n[6]) | (n[0] & n[4] & n[6])
            peel = (image == 1) & (neighbours >= 2) & (neighbours <= 6) & (changes == 1) & (corner == 0)
            if peel.any():
                image[peel] = 0
                changed = True
    return image[1:-1, 1:-1].astype(bool)


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
