"""Touching digits: how often ``mnistseg predict`` reads a row of digits that touch as the right digits.

Rows of two or three MNIST digits, each placed so that its ink touches the one before it and
then overlaps it by 0-4 pixels, and pairs of digits printed in a bold font with their glyphs
pushed together until they touch. A row is read right when ``describe_mask`` finds exactly its
digits, left to right. Each row is run through the model once; every post-processing rule is
then applied to the same logits: none (the network alone), the region vote (``fast``'s), and
the parts rule at several shares (``mnistseg.postprocess.vote_by_parts``). Beside it, what each
rule costs single digits: how many of the first ``--singles`` are read as exactly their digit, each
alone on a page as ``predict`` reads it, and the IoU over all of them as ``evaluate`` scores it.
Each count is also given for the rows of different digits alone: two touching digits of the
same class are one patch of one class in any class mask, which no rule on it can part.

Choose on ``--split val`` (the checkpoint's own validation digits); report on ``--split test``
once. Usage::

    .venv/bin/python benchmarks/touching_digits.py --split val                  # the bundled model
    .venv/bin/python benchmarks/touching_digits.py --split test --checkpoint runs/best
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from drawn_digits import FONT_FOLDERS
from mnistseg.checkpoint import BUNDLED_MODEL
from mnistseg.data import load_arrays, masks_from_images, split_indices
from mnistseg.inference import InferenceModel, load_for_inference
from mnistseg.metrics import per_image_counts
from mnistseg.picture import prepare_image
from mnistseg.postprocess import NETWORK_ALONE, InferencePolicy, masks_from_logits
from mnistseg.predict import Segmentation, describe_mask, read_segmentation, resize_logits
from mnistseg.scenes import touching_offset
from record import benchmark_parser, write_record

OVERLAPS = (0, 1, 2, 3, 4)  # pixels each digit overlaps the one before, after touching it
PART_SHARES = (0.15, 0.25, 0.35)
BOLD_FONTS = ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "LiberationSerif-Bold.ttf")
THRESHOLD = 0.2


def policies() -> dict[str, InferencePolicy]:
    """The rules compared: the argmax alone, the region vote of ``fast`` and ``best``, the parts rule at each share."""
    region = InferencePolicy(vote="region")
    rules = {"network alone": NETWORK_ALONE, "region vote": region}
    for share in PART_SHARES:
        rules[f"parts {share:.2f}"] = replace(region, vote="parts", min_part_share=share)
    return rules


def chain(pieces: list[np.ndarray], overlap: int) -> np.ndarray:
    """Digits side by side (float ``[H, W]`` each, light on black), each touching the last, then ``overlap`` px more.

    Touching as the training rows touch (:func:`mnistseg.scenes.touching_offset`).
    """
    canvas = pieces[0]
    for piece in pieces[1:]:
        height = max(canvas.shape[0], piece.shape[0])
        touching = touching_offset(_pad_rows(canvas, height) > THRESHOLD, _pad_rows(piece, height) > THRESHOLD)
        offset = max(0, (canvas.shape[1] if touching is None else touching) - overlap)
        width = max(canvas.shape[1], offset + piece.shape[1])
        joined = np.zeros((height, width), dtype=np.float32)
        joined[: canvas.shape[0], : canvas.shape[1]] = canvas
        placed = np.zeros_like(joined)
        placed[: piece.shape[0], offset : offset + piece.shape[1]] = piece
        canvas = np.maximum(joined, placed)
    return canvas


def _pad_rows(image: np.ndarray, height: int) -> np.ndarray:
    return np.pad(image, ((0, height - image.shape[0]), (0, 0)))


def mnist_rows(images: torch.Tensor, labels: torch.Tensor, count: int, length: int, seed: int) -> list[tuple]:
    """``count`` rows per overlap of ``length`` digits drawn at random: (digits, overlap, image)."""
    rng = np.random.default_rng(seed)
    rows = []
    for overlap in OVERLAPS:
        for _ in range(count):
            chosen = rng.choice(len(labels), size=length, replace=False)
            pieces = [images[index].numpy().astype(np.float32) / 255 for index in chosen]
            rows.append(([int(labels[index]) for index in chosen], overlap, chain(pieces, overlap)))
    return rows


def single_rows(images: torch.Tensor, labels: torch.Tensor, count: int) -> list[tuple]:
    """The first ``count`` digits, each alone on its page: (digits, "single", image)."""
    return [([int(labels[index])], "single", images[index].numpy().astype(np.float32) / 255) for index in range(count)]


def font_rows(height: int = 60) -> list[tuple]:
    """Every pair of digits (10 x 10) in each installed bold font, glyphs pushed together to touch."""
    fonts = {path.name: path for folder in FONT_FOLDERS if folder.is_dir() for path in folder.rglob("*.ttf")}
    rows = []
    for name in (name for name in BOLD_FONTS if name in fonts):
        font = ImageFont.truetype(str(fonts[name]), size=height)
        glyphs = {digit: _glyph(font, digit) for digit in range(10)}
        for first, second in itertools.product(range(10), repeat=2):
            rows.append(([first, second], name, chain([glyphs[first], glyphs[second]], 0)))
    return rows


def _glyph(font: ImageFont.FreeTypeFont, digit: int) -> np.ndarray:
    left, top, right, bottom = font.getbbox(str(digit))
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), str(digit), fill=255, font=font)
    return np.asarray(canvas, dtype=np.float32) / 255


def read_rows(
    model: InferenceModel, rows: list[tuple], rules: dict[str, InferencePolicy], part_wide: bool = True
) -> dict[str, Any]:
    """Per rule, how many rows read right, in all and per kind (overlap or font).

    ``part_wide``: read as ``predict`` does (:func:`mnistseg.predict.read_segmentation`: a wide patch of
    one class may be two digits); False: the mask alone (:func:`mnistseg.predict.describe_mask`).
    """
    names = model.record.class_names
    right = {rule: {} for rule in rules}
    distinct = {rule: [0, 0] for rule in rules}  # rows of different digits only: a class mask can part those
    for digits, kind, image in rows:
        page = np.pad(np.clip(image, 0, 1), 8)  # a margin of paper around the row
        picture = Image.fromarray(np.uint8(np.round(255 - page * 255)))  # dark ink on white, as a page
        prepared = prepare_image(picture, "auto")
        logits = resize_logits(model.logits(prepared.tensor).cpu(), prepared)
        strokes = None if prepared.strokes is None else torch.from_numpy(prepared.strokes)[None]
        raw = masks_from_logits(logits, NETWORK_ALONE, strokes)[0]
        for rule, policy in rules.items():
            mask = masks_from_logits(logits, policy, strokes)[0]
            if part_wide:
                found = read_segmentation(Segmentation(mask, raw, prepared), model, names)["digits"]
            else:
                found = describe_mask(mask, names)["digits"]
            counts = right[rule].setdefault(str(kind), [0, 0])
            counts[0] += found == digits
            counts[1] += 1
            if len(set(digits)) == len(digits):
                distinct[rule][0] += found == digits
                distinct[rule][1] += 1
    return {
        rule: {"read_right": sum(c[0] for c in per_kind.values()), "rows": sum(c[1] for c in per_kind.values()),
               "per_kind": per_kind, "different_digits": distinct[rule]}
        for rule, per_kind in right.items()
    }  # fmt: skip


def single_digit_iou(model: InferenceModel, images: torch.Tensor, labels: torch.Tensor, rules: dict) -> dict:
    """Each rule's IoU over single 28x28 digits (the preset's own evaluation, with each rule)."""
    inputs = images.unsqueeze(1).float() / 255  # (N, 1, 28, 28)
    target = masks_from_images(inputs, labels)
    totals = {rule: torch.zeros(3, dtype=torch.int64) for rule in rules}
    for start in range(0, len(inputs), 1000):
        logits = model.logits(inputs[start : start + 1000]).cpu()
        for rule, policy in rules.items():
            predicted = masks_from_logits(logits, replace(policy, min_region_share=0.0))  # as evaluate scores
            totals[rule] += per_image_counts(predicted, target[start : start + 1000]).sum(dim=0)
    return {rule: float(tp / (tp + fp + fn)) for rule, (tp, fp, fn) in ((r, t.tolist()) for r, t in totals.items())}


def main() -> None:
    parser = benchmark_parser(__doc__, "touching_digits.json")
    parser.add_argument("--checkpoint", type=Path, default=BUNDLED_MODEL, help="model (default: the bundled one)")
    parser.add_argument("--split", choices=("val", "test"), default="val", help="digits to use (default: val)")
    parser.add_argument("--rows", type=int, default=100, help="MNIST rows per overlap and length (default: 100)")
    parser.add_argument("--singles", type=int, default=1000, help="single digits read alone (default: 1000)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction,
                        help="test-time shifts on or off (default: as the checkpoint's recipe)")  # fmt: skip
    parser.add_argument("--part-wide", action=argparse.BooleanOptionalAction, default=True,
                        help="read a wide patch of one class as two digits where the network reads its halves so, as "
                             "predict does (default: on; --no-part-wide: the mask alone)")  # fmt: skip
    args = parser.parse_args()
    model = load_for_inference(args.checkpoint, "torch", "cpu", precision="fp32", tta=args.tta)
    images, labels = load_arrays(args.root, train=args.split == "val")
    if args.split == "val":
        count = model.record.recipe.subset or len(labels)
        _, val_index = split_indices(min(count, len(labels)), model.record.recipe.seed)
        images, labels = images[val_index], labels[val_index]
    rules = policies()
    results = {
        "pairs": read_rows(model, mnist_rows(images, labels, args.rows, 2, seed=1), rules, args.part_wide),
        "triples": read_rows(model, mnist_rows(images, labels, args.rows, 3, seed=2), rules, args.part_wide),
        "printed pairs": read_rows(model, font_rows(), rules, args.part_wide),
        "single digits": read_rows(model, single_rows(images, labels, args.singles), rules, args.part_wide),
        "single digits IoU": single_digit_iou(model, images, labels, rules),
    }
    print(f"{model.describe()}, {args.split} digits; rows read right as the right digits:")
    for rule in rules:
        cells = [f"{kind} {results[kind][rule]['read_right']}/{results[kind][rule]['rows']}"
                 f" (different digits {'/'.join(map(str, results[kind][rule]['different_digits']))})"
                 for kind in ("pairs", "triples", "printed pairs")]  # fmt: skip
        single = results["single digits"][rule]
        print(f"  {rule:<12} " + ", ".join(cells) + f"; single digits read {single['read_right']}/{single['rows']},"
              f" IoU {results['single digits IoU'][rule]:.4f}")  # fmt: skip
    # The logits were averaged over shifts already where the model's policy says so (model.logits).
    own = next((rule for rule, policy in rules.items() if replace(policy, tta=model.policy.tta) == model.policy), None)
    write_record(args.json, checkpoint=str(args.checkpoint), model=model.describe(), model_rule=own, split=args.split,
                 part_wide=args.part_wide, rules=list(rules), **results)  # fmt: skip


if __name__ == "__main__":
    main()
