"""Stage 8: use a trained model on your own pictures.

:func:`predict` brings a picture to MNIST's conventions (:mod:`mnistseg.picture`: polarity,
contrast, specks, pen width, size), runs the model, brings the mask back to the input's full
size (onto the user's own strokes, if they were thickened), and turns the logits into the mask
by the checkpoint's own policy (:attr:`~mnistseg.inference.InferenceModel.policy`, applied by
:func:`~mnistseg.postprocess.masks_from_logits`, exactly as ``mnistseg evaluate`` scores it: for
``fast`` and ``best`` one class per connected region, one stroke one digit).
:func:`describe_mask` reads the digits off the mask, left to right, leaving out specks.

Example::

    from PIL import Image
    from mnistseg.inference import load_for_inference
    from mnistseg.predict import predict

    model = load_for_inference("runs/fast")
    mask = predict(Image.open("my_digits.jpg"), model)   # int64 [H, W], 0 = background
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from mnistseg.files import atomic_write_bytes, atomic_write_json
from mnistseg.inference import InferenceModel, as_inference_model
from mnistseg.picture import MARGIN, MAX_SCALED_PIXELS, PreparedImage, prepare_image, read_image
from mnistseg.postprocess import NETWORK_ALONE, InferencePolicy, label_parts, masks_from_logits

# describe_mask reads no digit off a region smaller than this share of the largest (a fragment
# given a class of its own). Validation digits, the bundled model, its parts rule, pieces joined
# (benchmarks/touching_digits.py, one run each): 8% read 421 of 448 touching pairs of different
# digits, 357/360 printed pairs and 971/1000 single digits right; 5%: 419, 357, 969; 2%: 419, 355, 967.
MIN_REGION_SHARE = 0.08
# Pieces of one class read as one digit when their boxes meet or overlap in columns and their rows
# lie at most this share of the page's tallest part apart: a 5 whose top bar is detached, a 3 in
# two halves. Digits side by side stay apart (they share no column). The same validation run, at
# 2% (the share before): shares of 0.1, 0.2 and 0.3 read the same; without joining, 412 pairs,
# 354 printed pairs and 962 single digits (the three above: 419, 355, 967).
PIECE_GAP_SHARE = 0.2
# A digit wider than this many times its height may be two touching digits of one class ("55",
# "00"): a class mask makes them one patch. It is parted at its thinnest column between 30% and
# 70% of its width when the network, reading each half alone, finds that class in both
# (:func:`split_column`). Chosen on validation digits with the bundled model and its parts rule, in an
# exploratory run of each share (halves cut from the page at its own resolution): 1.0 read 435 of 500
# touching pairs, 392/400 printed pairs, 309/500 triples and 970/1000 single digits; 1.15 read 433,
# 391, 305 and 971, losing no single digit (971 without parting). As shipped (halves cut from the
# network's input), benchmarks/touching_digits.py reads 437, 391, 307 and 971 there, and no row of
# different digits fewer (benchmarks/results/touching_digits_bundled_val.json).
WIDE_SHARE = 1.15
SPLIT_WINDOW = (0.3, 0.7)  # where along a wide digit's width the cut may fall


@torch.inference_mode()
def predict(
    image: Image.Image | np.ndarray | Tensor, model: nn.Module | InferenceModel, invert: str = "auto"
) -> Tensor:
    """Segment one image of any size.

    Args:
        image: a PIL image or an array ``[H, W]`` / ``[H, W, C]``.
        model: a checkpoint opened by :func:`~mnistseg.inference.load_for_inference` (run
            as its recipe says, test-time shifts included), or a bare trained
            :class:`~mnistseg.model.SimpleUNet` (run in eval mode, float32, with the region vote).
        invert: "auto", "yes" or "no" (see :func:`prepare_image`).

    Returns:
        int64 ``[H, W]``: class ids at the input's size (0 background, digit + 1).
    """
    return segment(image, model, invert).mask


@dataclass(frozen=True)
class Segmentation:
    """What :func:`segment` found in one image.

    Attributes:
        mask: int64 ``[H, W]`` at the input's size, by the model's policy (for ``fast`` and
            ``best``: each connected region one class, its majority).
        raw_mask: int64 ``[H, W]``: the network's own argmax, before the vote.
        prepared: how the image was brought to MNIST's conventions.
    """

    mask: Tensor
    raw_mask: Tensor
    prepared: PreparedImage


@torch.inference_mode()
def segment(
    image: Image.Image | np.ndarray | Tensor,
    model: nn.Module | InferenceModel,
    invert: str = "auto",
    max_scaled_pixels: int = MAX_SCALED_PIXELS,
    normalise_pen: bool = True,
    policy: InferencePolicy | None = None,
) -> Segmentation:
    """:func:`predict`, also returning the network's mask before the vote and how the image was prepared.

    ``policy`` turns the logits into the mask (:func:`~mnistseg.postprocess.masks_from_logits`);
    None: the model's own (:attr:`~mnistseg.inference.InferenceModel.policy`), as ``evaluate`` uses.
    """
    model = as_inference_model(model)
    prepared = prepare_image(image, invert, max_scaled_pixels, normalise_pen)
    logits = resize_logits(model.logits(prepared.tensor).cpu(), prepared)  # (1, 11, H, W)
    # Thickened for the network: the mask goes back on the strokes as drawn.
    strokes = None if prepared.strokes is None else torch.from_numpy(prepared.strokes)[None]  # (1, H, W)
    raw = masks_from_logits(logits, NETWORK_ALONE, strokes)[0]  # (H, W)
    return Segmentation(masks_from_logits(logits, policy or model.policy, strokes)[0], raw, prepared)


def read_segmentation(found: Segmentation, model: nn.Module | InferenceModel, names: Sequence[str]) -> dict[str, Any]:
    """The digits of a :class:`Segmentation`, as ``mnistseg predict`` and ``serve`` report them.

    :func:`describe_mask` on the mask, where a wide patch of one class is read as two digits when
    the network reads each of its halves alone as that class (:func:`split_column`).

    Args:
        found: what :func:`segment` returned for an image and ``model``.
        model: the model that segmented it.
        names: the class names, background first.

    Returns:
        :func:`describe_mask`'s summary, with each region's ``votes``.
    """
    model = as_inference_model(model)

    def parts_in_two(region: np.ndarray, class_id: int) -> int | None:
        return split_column(region, class_id, found.prepared, model, names)

    return describe_mask(found.mask, names, raw=found.raw_mask, split=parts_in_two)


def split_column(
    region: np.ndarray, class_id: int, prepared: PreparedImage, model: InferenceModel, names: Sequence[str]
) -> int | None:
    """Where a wide patch of one class parts into two digits of that class, if it does.

    A patch wider than :data:`WIDE_SHARE` times its height is cut at its thinnest column within
    :data:`SPLIT_WINDOW` of its width. Each half of its ink, as the network saw it, is then read
    alone as a page (:func:`segment`, :func:`describe_mask`); the patch parts only if both halves
    read as exactly one digit of ``class_id``. A wide single digit (a flat 2, a wide 0) cut in two
    leaves halves that read as something else, or as nothing.

    Args:
        region: bool ``[H, W]`` at the input's size: the patch's pixels.
        class_id: its class (digit + 1).
        prepared: the image as the network saw it (:func:`mnistseg.picture.prepare_image`).
        model: the model to read the halves with.
        names: the class names, background first.

    Returns:
        The input's first column of the right-hand digit, or None (one digit).
    """
    rows, columns = np.nonzero(region)
    if len(columns) == 0:
        return None
    left, width = int(columns.min()), int(columns.max() - columns.min() + 1)
    if width <= WIDE_SHARE * (rows.max() - rows.min() + 1):
        return None
    profile = np.bincount(columns - left, minlength=width)
    start, stop = int(SPLIT_WINDOW[0] * width), int(np.ceil(SPLIT_WINDOW[1] * width))
    cut = left + start + int(np.argmin(profile[start:stop]))
    ink = region_ink(region, prepared)  # (h, w), light on black
    scaled_cut = MARGIN + round(cut * prepared.scaled_size[1] / prepared.original_size[1])
    for half in (ink[:, :scaled_cut], ink[:, scaled_cut:]):
        alone = segment(half, model, invert="no", normalise_pen=False)
        if describe_mask(alone.mask, names)["digits"] != [class_id - 1]:
            return None
    return cut


def region_ink(region: np.ndarray, prepared: PreparedImage) -> np.ndarray:
    """The network's input where ``region`` (bool ``[H, W]``, the input's size) lies, a pixel around it included.

    Returns:
        float32 ``[h, w]`` in 0..1, the size of ``prepared.tensor``'s image, 0 elsewhere.
    """
    scaled = F.interpolate(torch.from_numpy(region)[None, None].float(), size=prepared.scaled_size, mode="nearest")
    height, width = prepared.tensor.shape[-2:]
    placed = F.pad(scaled, (MARGIN, width - MARGIN - scaled.shape[-1], MARGIN, height - MARGIN - scaled.shape[-2]))
    near = F.max_pool2d(placed, 3, stride=1, padding=1)  # a pixel around the patch: its strokes' soft edges
    return (prepared.tensor.cpu() * near)[0, 0].numpy()


def resize_logits(logits: Tensor, prepared: PreparedImage) -> Tensor:
    """Crop the padding off ``[1, C, h, w]`` logits and resize them to the input's size ``[1, C, H, W]``."""
    scaled_h, scaled_w = prepared.scaled_size
    cropped = logits[..., MARGIN : MARGIN + scaled_h, MARGIN : MARGIN + scaled_w]
    return F.interpolate(cropped, size=prepared.original_size, mode="bilinear", align_corners=False)


def join_pieces(
    parts: np.ndarray, part_class: np.ndarray, min_share: float = 0.0, gap_share: float = PIECE_GAP_SHARE
) -> np.ndarray:
    """Which parts of one class are pieces of one digit: boxes that share a column, rows close.

    Two parts join when they have the same class, their boxes meet or overlap in columns, and at
    most ``gap_share`` of the tallest part's height in rows lies between them (joins chain).

    Args:
        parts: int ``[H, W]`` part numbers 1..count, 0 on background (:func:`mnistseg.postprocess.label_parts`).
        part_class: int ``[count + 1]``, each part's class (0 for row 0).
        min_share: parts with fewer pixels than this share of the largest join nothing (specks;
            it also keeps the pairs to compare few).
        gap_share: see above.

    Returns:
        int64 ``[count + 1]``: each part's digit, 1..digits (0 for row 0).
    """
    from scipy import ndimage, sparse
    from scipy.sparse.csgraph import connected_components

    count = len(part_class) - 1
    boxes = ndimage.find_objects(parts, max_label=count)  # every part 1..count has pixels
    top, bottom, left, right = np.array([[rows.start, rows.stop, columns.start, columns.stop]
                                         for rows, columns in boxes], dtype=np.int64).reshape(count, 4).T  # fmt: skip
    tallest = (bottom - top).max(initial=0)
    area = np.bincount(parts.ravel(), minlength=count + 1)[1:]
    index = np.flatnonzero(area >= min_share * area.max(initial=0))  # the parts that may be pieces, 0-based
    top, bottom, left, right = (edge[index] for edge in (top, bottom, left, right))
    column_gap = np.maximum(left[None, :] - right[:, None], left[:, None] - right[None, :])  # (pieces, pieces)
    row_gap = np.maximum(top[None, :] - bottom[:, None], top[:, None] - bottom[None, :])
    classes = part_class[index + 1]
    first, second = np.nonzero(
        (classes[:, None] == classes[None, :]) & (column_gap <= 0) & (row_gap <= gap_share * tallest)
    )
    joined = sparse.coo_matrix((np.ones(len(first)), (index[first], index[second])), shape=(count, count))
    _, digit = connected_components(joined, directed=False)
    return np.concatenate([[0], digit + 1]).astype(np.int64)


def describe_mask(
    mask: Tensor,
    names: Sequence[str],
    min_area_fraction: float = MIN_REGION_SHARE,
    raw: Tensor | None = None,
    split: Callable[[np.ndarray, int], int | None] | None = None,
) -> dict[str, Any]:
    """Read a predicted mask: the digits left to right, areas per class, and regions.

    A region is a connected patch of one class (8-connected): the mask's own decision, so two
    touching digits the policy kept apart are read as two; patches of one class stacked in the
    same columns are the pieces of one digit, one region (:func:`join_pieces`). Regions smaller
    than ``min_area_fraction`` of the largest are noise and are skipped.

    Args:
        mask: int64 ``[H, W]`` class ids.
        names: the class names, background first.
        min_area_fraction: see above.
        raw: the network's mask before the vote (:attr:`Segmentation.raw_mask`); if
            given, each region also reports how its pixels voted.
        split: asked of each region (bool ``[H, W]``, class id) whether it is two digits of its
            class, it gives the right-hand one's first column or None (:func:`read_segmentation`
            asks the network, :func:`split_column`); None: a region is one digit.

    Returns:
        ``{"digits": [int, ...], "areas": {name: pixels}, "regions": [{"bbox": [x0, y0,
        x1, y1], "class": name, "class_id": int, "area": pixels, "votes": {name: pixels},
        "agreement": share of the winner}, ...]}``, regions left to right (``votes`` and
        ``agreement`` with ``raw``).
    """
    from scipy import ndimage  # where it is used: see mnistseg.picture's note on SciPy

    array = mask.cpu().numpy()
    areas = {names[index]: int((array == index).sum()) for index in range(1, len(names))}
    parts, part_class = label_parts(mask[None], len(names))
    digit_of = join_pieces(parts[0], part_class, min_area_fraction)
    labels, part_class = digit_of[parts[0]], part_class[np.unique(digit_of, return_index=True)[1]]
    if split is not None:
        labels, part_class = split_regions(labels, part_class, split, min_area_fraction)
    raw_array = raw.cpu().numpy() if raw is not None else None
    regions = []
    for number, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        inside = labels[found] == number
        winner = int(part_class[number])
        region = {
            "bbox": [found[1].start, found[0].start, found[1].stop, found[0].stop],
            "class": names[winner],
            "class_id": winner,
            "area": int(inside.sum()),
        }
        if raw_array is not None:
            counts = np.bincount(raw_array[found][inside], minlength=len(names))
            region["votes"] = {names[index]: int(counts[index]) for index in np.flatnonzero(counts) if index > 0}
            region["agreement"] = round(float(counts[winner] / max(counts[1:].sum(), 1)), 4)
        regions.append(region)
    largest = max((region["area"] for region in regions), default=0)
    regions = [region for region in regions if region["area"] >= min_area_fraction * largest]
    regions.sort(key=lambda region: (region["bbox"][0] + region["bbox"][2]) / 2)
    return {
        "digits": [region["class_id"] - 1 for region in regions],
        "areas": areas,
        "regions": regions,
    }


def split_regions(
    labels: np.ndarray, region_class: np.ndarray, split: Callable[[np.ndarray, int], int | None], min_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Part the regions ``split`` says are two digits: their pixels right of its column become a new region.

    Args:
        labels: int ``[H, W]`` region numbers 1..count, 0 on background.
        region_class: int ``[count + 1]``, each region's class (0 for row 0).
        split: see :func:`describe_mask`.
        min_share: regions under this share of the largest are specks, not asked.

    Returns:
        ``(labels, region_class)`` with the new regions numbered after the old.
    """
    area = np.bincount(labels.ravel(), minlength=len(region_class))
    area[0] = 0
    labels, classes = labels.copy(), list(region_class)
    for number in np.flatnonzero(area >= max(min_share * area.max(), 1)):
        region = labels == number
        column = split(region, int(region_class[number]))
        if column is not None:
            labels[region & (np.arange(labels.shape[1]) >= column)] = len(classes)
            classes.append(region_class[number])
    return labels, np.asarray(classes, dtype=np.int64)


def predict_file(
    path: Path, model: nn.Module | InferenceModel, out: Path, names: Sequence[str], invert: str = "auto"
) -> dict[str, Any]:
    """Segment one image file and write ``<stem>_mask.png``, ``<stem>_overlay.png`` and ``<stem>.json`` into ``out``.

    The overlay draws the class colours over the user's own picture (its own polarity and colours).

    Returns:
        The JSON summary (see :func:`describe_mask`, with each region's ``votes``) with
        ``image``, ``inverted``, ``tta`` (whether test-time shifts were averaged),
        ``stroke_width`` (the pen, input pixels), ``strokes`` ("kept", "thickened" or
        "thinned"), ``specks_removed`` and ``files``.
    """
    image = read_image(path)
    model = as_inference_model(model)
    found = segment(image, model, invert)
    prepared = found.prepared
    summary = {
        "image": str(path), "inverted": prepared.inverted, "tta": model.tta,
        "stroke_width": round(prepared.stroke_width, 1), "strokes": prepared.stroke_change,
        "specks_removed": prepared.specks_removed, **read_segmentation(found, model, names),
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    mask_path, overlay_path, json_path = (
        out / f"{path.stem}{suffix}" for suffix in ("_mask.png", "_overlay.png", ".json")
    )
    buffer = io.BytesIO()
    Image.fromarray(found.mask.numpy().astype(np.uint8), mode="L").save(buffer, format="PNG")
    atomic_write_bytes(mask_path, buffer.getvalue())
    from mnistseg.figures import save_prediction_figure  # matplotlib: only when a figure is drawn

    picture = np.asarray(image.convert("RGB"), dtype=np.float32) / 255  # the user's own picture, as it is
    digits = " ".join(str(digit) for digit in summary["digits"]) or "none found"
    save_prediction_figure(picture, found.mask, overlay_path, names, title=f"{path.name}: {digits}")
    summary["files"] = {"mask": str(mask_path), "overlay": str(overlay_path)}
    atomic_write_json(json_path, summary)
    return summary
