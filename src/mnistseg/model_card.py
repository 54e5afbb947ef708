"""``MODEL_CARD.md``: what a checkpoint folder holds, for people, in the Hugging Face hub's layout.

A YAML header (license, data set, metrics, ``pipeline_tag: image-segmentation``, tags and a
``model-index`` with the validation and, once evaluated, test IoU), then what the model is
for, how it was trained, how good it is, and what it cannot do. ``mnistseg train`` writes
it with every checkpoint and ``mnistseg evaluate`` rewrites it with the test figures.
Nothing is uploaded anywhere.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from mnistseg.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointRecord
from mnistseg.datasets import get_dataset
from mnistseg.files import atomic_write_text
from mnistseg.prepare import sha256_of

CARD_FILE = "MODEL_CARD.md"


def _counts(section: dict[str, Any]) -> str:
    iou = "n/a (no foreground)" if section["iou"] is None else f"{section['iou']:.4f}"
    return f"TP {section['tp']:,}, FP {section['fp']:,}, FN {section['fn']:,}: IoU {iou}"


# Validation during training scores the network alone: its argmax, without the recipe's test-time
# shifts or region vote (those are paid at evaluation, not in every epoch).
VALIDATION_HOW = "the network's argmax, no post-processing"


def scored_how(test: dict[str, Any]) -> str:
    """How ``mnistseg evaluate`` scored a summary, e.g. ``"bf16, test-time shifts, region vote"``."""
    vote = test.get("vote", "none")
    return (
        test.get("precision", "fp32")
        + (", test-time shifts" if test.get("tta") else "")
        + (f", {vote} vote" if vote != "none" else "")
    )


# What the model's post-processing rule (``recipe.vote``) does to digits that touch.
TOUCHING_LIMITS = {
    "region": "* Two digits that touch form one region and are read as one digit (the region vote).",
    "parts": "* Digits that touch are kept apart where the network gives each a coherent part of the region "
    "(the parts rule), not always: `benchmarks/touching_digits.py` says how often; two touching digits of the "
    "same class are one patch of that class, read as two only where the patch is wide and the network reads "
    "each half alone as that class (`mnistseg.predict.split_column`).",
    "none": "* The network's own pixels, without a vote: a digit may come out in pieces of several classes.",
}


def model_card(folder: str | Path, record: CheckpointRecord, test: dict[str, Any] | None = None) -> str:
    """The text of a checkpoint folder's model card.

    Args:
        folder: the checkpoint folder (its weights are hashed).
        record: its ``config.json`` record.
        test: the summary ``mnistseg evaluate`` wrote, if the test set was scored.
    """
    folder = Path(folder)
    recipe = record.recipe
    dataset = get_dataset(recipe.dataset).hub_id
    name = f"mnistseg-{recipe.name}-{recipe.dataset}"
    metrics = []
    if record.best is not None and record.best["val"]["iou"] is not None:
        metrics.append((f"validation IoU ({VALIDATION_HOW})", record.best["val"]["iou"]))
    if test is not None and test["iou"] is not None:
        metrics.append((f"test IoU ({scored_how(test)})", test["iou"]))
    item = "          - type: iou\n            name: {}\n            value: {:.4f}\n"
    metric_lines = "".join(item.format(label, value) for label, value in metrics)
    header = (
        "---\n"
        "license: mit\n"
        "library_name: pytorch\n"
        "pipeline_tag: image-segmentation\n"
        "tags:\n  - semantic-segmentation\n  - u-net\n  - mnist\n  - mnistseg\n"
        f"datasets:\n  - {dataset}\n"
        "metrics:\n  - iou\n  - dice\n"
        "model-index:\n"
        f"  - name: {name}\n"
        "    results:\n"
        "      - task:\n          type: image-segmentation\n          name: Semantic segmentation\n"
        f"        dataset:\n          type: {dataset}\n          name: {recipe.dataset}, threshold {recipe.threshold}\n"
        + ("        metrics:\n" + metric_lines if metrics else "")
        + "---\n"
    )  # fmt: skip
    weights = folder / WEIGHTS_FILE
    lines = [
        f"# {name}",
        "",
        f"A small U-Net (`{recipe.model.describe()}`) "
        f"that gives every pixel of a {recipe.dataset} image one of {len(record.class_names)} classes: "
        f"background, or the class of what it belongs to ({', '.join(record.class_names[1:])}). "
        f"A pixel is foreground when its intensity (0..1) is over {recipe.threshold}. Trained by "
        f"`mnistseg train` from the `{recipe.name}` preset.",
        "",
        "## Intended use",
        "",
        "Teaching and demonstrating semantic segmentation: `mnistseg predict IMAGE --checkpoint DIR` segments "
        "pictures of handwritten digits (any size, dark on light or light on dark), `mnistseg serve "
        "--checkpoint DIR` on a page you draw on. Not for reading real documents: it knows ten digit shapes and "
        "nothing else.",
        "",
        "## Training",
        "",
        "| field | value |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in asdict(recipe).items()],
        f"| precision it trained in | {record.precision or 'not recorded'} |",
        f"| world size | {record.world_size} |",
        f"| versions | {', '.join(f'{key} {value}' for key, value in record.versions.items())} |",
        "",
        "## Results",
        "",
    ]
    if record.best is not None:
        lines.append(
            f"* Validation (best epoch, {record.best['epoch']}; {VALIDATION_HOW}): {_counts(record.best['val'])}."
        )
    if test is not None:
        lines.append(f"* Test ({test['images']:,} images, {scored_how(test)}): {_counts(test)}.")
    else:
        lines.append("* Test: not scored yet (`mnistseg evaluate --checkpoint DIR` adds it here).")
    lines += [
        "",
        "Counts are pixels of the 10 foreground classes summed over the split; IoU = TP / (TP + FP + FN).",
        "",
        "## Limits",
        "",
        TOUCHING_LIMITS[recipe.vote],
        "* Trained on MNIST's centred, 20-pixel digits with 2-3 pixel strokes: `mnistseg predict` brings a "
        "picture to that size and stroke width first; very thin or very thick pens, unusual styles and "
        "other scripts are read less well.",
        "* A misread digit costs all its pixels twice (one FP, one FN): most remaining errors are whole digits "
        "taken for another, not stroke edges.",
        "",
        "## Files",
        "",
        f"* `{WEIGHTS_FILE}` (safetensors, weights of the best validation epoch): sha256 "
        f"`{sha256_of(weights) if weights.is_file() else 'not written yet'}`",
        f"* `{CONFIG_FILE}`: the full record (recipe, data root, class names, metrics, versions).",
        "",
    ]
    return header + "\n" + "\n".join(lines)


def write_model_card(folder: str | Path, record: CheckpointRecord, test: dict[str, Any] | None = None) -> Path:
    """Write ``<folder>/MODEL_CARD.md``, atomically; returns its path."""
    path = Path(folder) / CARD_FILE
    atomic_write_text(path, model_card(folder, record, test))
    return path
