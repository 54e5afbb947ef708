"""Training recipes: everything that decides a run, and the named presets.

* ``reference``: the article's recipe, exactly: width 64, batch 100, Adam at a constant
  1e-3, 20 epochs, per-item ``Dataset`` with the article's affine in 4 DataLoader workers,
  float32. Hours on 2 CPU cores; its test IoU 0.9599 in one 20-epoch GPU run (the article:
  0.9595; docs/reproducing.md).
* ``fast``: the least wall time to the reference's test IoU on a CPU, the whole process.
* ``best``: the highest IoU in minutes of training on 2 CPU cores.

Their times on each CPU class are in docs/results.md, written from ``benchmarks/results/``.

Every choice below was measured on the validation split, never the test set
(``benchmarks/choices.py``, ``benchmarks/time_to_quality.py``; numbers from their JSON in
``benchmarks/results/``, mean over seeds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from types import MappingProxyType
from typing import Any

import torch

from mnistseg.datasets import DATASETS, DEFAULT_THRESHOLD, NUM_CLASSES, get_dataset
from mnistseg.device import PRECISION_CHOICES, resolve_precision
from mnistseg.model import ModelConfig

DEFAULT_PRESET = "fast"
VOTES = ("none", "region", "parts")  # how logits become a mask: mnistseg.postprocess says what each does
# The parts rule's least share of a region (--min-part-share): a quarter keeps single digits a
# little higher, 0.15 more of three touching digits (benchmarks/results/touching_digits_*_val.json).
DEFAULT_MIN_PART_SHARE = 0.25
# The vote of a preset trained on generated canvases (--dataset scenes or rows), whose digits
# may touch: the parts rule keeps touching digits apart, where the region vote reads almost no
# touching pair right (benchmarks/results/touching_digits_bundled_val.json). On single digits
# the region vote stays: the parts rule scores them a little lower (the same file).
SCENES_VOTE = "parts"
# What a preset changes where its run resolves to float32 on a CPU (no native bf16: most
# laptops, :func:`mnistseg.device.resolve_precision`), so that each CPU class runs what is fast there:
# * ``best`` keeps its minutes rather than its epochs: an epoch in float32 takes twice as long
#   or more as in native bf16, so 8 epochs there, 12 where bf16 is native; each within 1/25 of
#   the reference recipe's 20 epochs on its class.
# * ``fast`` trains the same network as where bf16 is native, three blocks at quarter size giving the
#   class scores, but 8 channels at full resolution at 0.024 instead of 16 at 0.03: on an AVX2 CPU,
#   validation, 3 seeds (benchmarks/results/choices_float32.json), its network alone scored 0.9638
#   ± 0.0020 (lowest seed 0.9618) in 23.2 s of whole process, the native class's 16 channels
#   0.9623 in 27.6 s, and the previous float32 fast (two blocks, both coarse levels' scores,
#   18,000 images) 0.9438 in 19.6 s: only with the region vote did that one clear 0.9594.
#   Where bf16 is native, fast's 16 channels at full resolution at 0.03 were chosen for the
#   previous network; with three blocks, 8/32/64 at 0.024 scored a little higher on validation
#   in about the same time (benchmarks/results/choices.json): a lead, not yet taken there.
FP32_CPU_CHANGES: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType({
    "best": MappingProxyType({"epochs": 8}),
    "fast": MappingProxyType({"widths": (8, 32, 64), "lr": 2.4e-2}),
})  # fmt: skip


def check_vote(vote: str, min_part_share: float) -> None:
    """The post-processing fields' one check (a recipe's and :class:`mnistseg.postprocess.InferencePolicy`'s).

    Raises:
        ValueError: for a vote not in :data:`VOTES`, or a share outside [0, 1).
    """
    if vote not in VOTES:
        raise ValueError(f"vote must be one of {', '.join(VOTES)}; got {vote!r}")
    if not 0.0 <= min_part_share < 1.0:
        raise ValueError(f"min_part_share must be in [0, 1), got {min_part_share}")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a training run (stored in ``config.json``).

    Attributes:
        name: the preset this recipe started from.
        epochs: passes over the training split.
        batch_size: images per optimizer step.
        lr: Adam's learning rate (the peak of the one-cycle schedule).
        head_lr_scale: the full-resolution 1x1 head learns at ``lr`` times this
            (:func:`mnistseg.train.parameter_groups`).
        widths: the U-Net's channels at full, half and quarter resolution (``--base-width N``
            fills it with N, 2N, 4N: :func:`mnistseg.model.widths_from_base`).
        input_to_head: the U-Net's 1x1 head also sees the input image.
        decoder: the U-Net's decoder, "concat" (the reference's) or "scores"
            (:class:`mnistseg.model.SimpleUNet`: where at full size, what from the coarse levels).
        bottleneck_blocks: the U-Net's 3x3 conv blocks at quarter size (the reference's 2).
        half_scores: the score decoder's class scores also come from the half-size level
            (False: from the bottleneck alone; :class:`mnistseg.model.SimpleUNet`).
        normalize: the network standardises its input with the data set's pixel mean and
            standard deviation (:class:`mnistseg.datasets.DatasetSpec`).
        schedule: "constant" or "onecycle" (warm up, then anneal to ~0, per step).
        precision: "fp32", "bf16" or "fp16" autocast, or "auto": the fastest this hardware runs,
            decided when the run starts (:func:`mnistseg.device.resolve_precision`; what ran is
            :attr:`mnistseg.checkpoint.CheckpointRecord.precision`). The reference stays fp32, the article's.
        loader: "batched" (in-memory, batch augmentation) or "dataset" (per-item).
        num_workers: DataLoader worker processes (loader "dataset" only).
        channels_last: NHWC memory layout, faster convolutions on CPUs and tensor cores (on both
            CPU classes, with and without AVX-512: ``benchmarks/time_to_quality.py``'s speed choices).
        mask_mode: batched loader: "derive" the mask from the augmented image (default), or
            "warp" it with nearest sampling as the reference does. A nearest-warped mask no
            longer follows the threshold rule on the bilinearly warped image, and the network
            learns that mismatch (one v0.1 run: far lower test IoU; docs/command-line.md). The
            per-item path always warps, as the reference.
        augment: apply the random affine to the training split (scenes and rows: compose new
            canvases of warped digits every epoch, :class:`mnistseg.data.FreshCanvases`).
        ema_decay: keep an exponential moving average of the weights with this decay per
            step, and validate and save the average (0 turns it off).
        tta: ``mnistseg evaluate`` averages the logits over 1-pixel shifts (5 passes).
            Validation stays plain: it only picks the checkpoint, and is paid in training time.
        vote: how ``mnistseg evaluate``, ``predict`` and ``serve`` use that a digit is one
            connected stroke (:mod:`mnistseg.postprocess`): "none" (the network's argmax),
            "region" (each connected region takes its majority class) or "parts" (the same,
            but a second class holding a coherent part of a region keeps it: touching digits
            stay two). Validation stays plain, as with ``tta``. Files that wrote true/false load
            as "region"/"none".
        min_part_share: with the parts rule, the least share of its region a class's connected
            part must hold to keep its class (:class:`mnistseg.postprocess.InferencePolicy`).
        seed: seeds the split, the initial weights, the order and the augmentation.
        threshold: intensity over which a pixel is foreground.
        dataset: a name in :data:`mnistseg.datasets.DATASETS`: "mnist", "fashion-mnist", or
            "scenes" (1-5 MNIST digits scattered on a 64x64 canvas) or "rows" (1-3 touching
            digits side by side on one).
        subset: use only the first N training images (then split 5:1); None for all.
    """

    name: str = "custom"
    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    head_lr_scale: float = 1.0
    widths: tuple[int, int, int] = (64, 128, 256)
    input_to_head: bool = False
    decoder: str = "concat"
    bottleneck_blocks: int = 2
    half_scores: bool = True
    normalize: bool = False
    schedule: str = "constant"
    precision: str = "fp32"
    loader: str = "dataset"
    num_workers: int = 4
    channels_last: bool = False
    mask_mode: str = "derive"
    augment: bool = True
    ema_decay: float = 0.0
    tta: bool = False
    vote: str = "none"
    min_part_share: float = DEFAULT_MIN_PART_SHARE
    seed: int = 0
    threshold: float = DEFAULT_THRESHOLD
    dataset: str = "mnist"
    subset: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.vote, bool):  # config.json before the parts rule: true meant the region vote
            object.__setattr__(self, "vote", "region" if self.vote else "none")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {self.num_workers}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        for name in ("lr", "head_lr_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.subset is not None and self.subset < 6:
            raise ValueError(f"subset must be at least 6 images (it is split 5:1), got {self.subset}")
        if not 0.0 <= self.threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        check_vote(self.vote, self.min_part_share)
        choices = {
            "schedule": ("constant", "onecycle"),
            "precision": PRECISION_CHOICES,
            "loader": ("batched", "dataset"),
            "mask_mode": ("derive", "warp"),
            "dataset": tuple(DATASETS),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        spec = get_dataset(self.dataset)
        if spec.scenes and self.loader != "batched":
            raise ValueError(f"{self.dataset} is made in memory: it trains with the batched loader (--loader batched)")
        if spec.scenes and self.augment and self.mask_mode != "derive":
            raise ValueError(f"{self.dataset}'s masks follow the warped digits (--mask-mode derive), not warped masks")
        if self.vote == "region" and spec.scenes:
            raise ValueError(
                f"{self.dataset}'s digits can touch, and the region vote makes a region one digit: "
                "use --vote parts or --vote none"
            )
        model = self.model  # validates the network's fields, and reads widths from JSON lists
        object.__setattr__(self, "widths", model.widths)

    @property
    def model(self) -> ModelConfig:
        """The model this recipe trains."""
        spec = get_dataset(self.dataset)
        mean, std = (spec.pixel_mean, spec.pixel_std) if self.normalize else (0.0, 1.0)
        return ModelConfig(1, NUM_CLASSES, self.widths, self.input_to_head, self.decoder, mean, std,
                           self.bottleneck_blocks, self.half_scores)  # fmt: skip


def presets() -> dict[str, Recipe]:
    """The named recipes (a new dict each call: nothing global to mutate).

    The measurements behind ``fast`` and ``best`` are in ``benchmarks/`` and docs/results.md.
    """
    cpu_recipe = Recipe(schedule="onecycle", precision="auto", loader="batched", num_workers=0, channels_last=True)
    return {
        "reference": Recipe(name="reference"),
        # The least wall time to the reference's test IoU from the network alone (its argmax, no
        # post-processing): one pass over 20,000 images (a 24,000-image subset split 5:1) with
        # the score decoder, its class scores from three 3x3 blocks at quarter size (a digit's
        # whole shape: half-size scores see ~13 px, and a stroke's end took another class), the
        # head at 300x the rate (it learns the threshold). Chosen on validation over 3 seeds
        # against its variants (four blocks, half-size scores too, the head at 1x, the previous
        # fast, fewer and more images, other widths: benchmarks/choices.py; the figures are in
        # docs/results.md, written from its JSON). No augmentation: one pass is too short to
        # profit from it. evaluate, predict and serve then add the region vote, as for best: it
        # still gains on single digits and mends stray fragments on a drawn page. Widths
        # 16/32/64 at 0.03 where bf16 is native; a CPU that trains in float32 takes 8/32/64 at
        # 0.024 (FP32_CPU_CHANGES).
        "fast": replace(
            cpu_recipe,
            name="fast",
            epochs=1,
            batch_size=32,
            lr=3e-2,
            head_lr_scale=300.0,
            widths=(16, 32, 64),
            input_to_head=True,
            decoder="scores",
            bottleneck_blocks=3,
            half_scores=False,
            augment=False,
            vote="region",
            subset=24_000,
        ),  # fmt: skip
        # The highest IoU in minutes of training on 2 CPU cores: within 1/25 of the reference
        # recipe's 20 epochs on either CPU class (12 epochs in native bf16, 8 in fp32:
        # FP32_CPU_CHANGES). Found by exploratory runs on validation, seed 0 (docs/results.md, "How
        # `best` was found"): the score decoder with widths 16/64/128 trains about twice the images
        # a second of the previous best (width 24, concat); its head at 300x the rate learns the
        # threshold (the input's weight must reach several hundred); with the warped images back
        # on 8-bit levels it gets the threshold right to the level. What remains is whole digits
        # misread. The moving average, test-time shifts and the vote are scored on validation
        # over 3 seeds by benchmarks/time_to_quality.py.
        "best": replace(
            cpu_recipe,
            name="best",
            epochs=12,
            batch_size=64,
            lr=1e-2,
            head_lr_scale=300.0,
            widths=(16, 64, 128),
            input_to_head=True,
            decoder="scores",
            ema_decay=0.999,
            tta=True,
            vote="region",
        ),  # fmt: skip
    }


def get_preset(name: str, device: torch.device | None = None, **overrides: Any) -> Recipe:
    """A preset with some fields replaced, e.g. ``get_preset("fast", epochs=1)``.

    Args:
        name: a key of :func:`presets`.
        device: where it will train. On a CPU where the run resolves to float32 the fields in
            :data:`FP32_CPU_CHANGES` take its values (those not given in ``overrides``); None:
            the preset as written.
        overrides: recipe fields to replace. Two follow another: ``decoder="concat"`` without
            ``half_scores`` takes every level's scores (``half_scores=True``), and a data set of
            canvases without ``vote`` takes the parts rule (:data:`SCENES_VOTE`).

    Raises:
        ValueError: for an unknown preset or field, or an invalid value.
    """
    known = presets()
    if name not in known:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(known)}")
    field_names = {field.name for field in fields(Recipe)}
    unknown = set(overrides) - field_names
    if unknown:
        raise ValueError(f"unknown recipe field(s): {', '.join(sorted(unknown))}")
    if "dataset" in overrides and "vote" not in overrides and get_dataset(overrides["dataset"]).scenes:
        overrides = {**overrides, "vote": SCENES_VOTE}  # touching digits share a region: not the region vote
    if (
        "decoder" in overrides
        and "half_scores" not in overrides
        and not ModelConfig(decoder=overrides["decoder"]).score_decoder
    ):
        overrides = {**overrides, "half_scores": True}  # the concat decoder always uses every level
    recipe = replace(known[name], **overrides)
    if device is not None and device.type == "cpu" and resolve_precision(recipe.precision, device) == "fp32":
        changes = {key: value for key, value in FP32_CPU_CHANGES.get(name, {}).items() if key not in overrides}
        recipe = replace(recipe, **changes)
    return recipe


def recipe_differences(stored: dict[str, Any], recipe: Recipe) -> str:
    """The fields where a stored recipe (from ``config.json``) and ``recipe`` differ, as text.

    Returns:
        ``""`` when they agree, else e.g. ``"lr 0.002 -> 0.003, dataset 'mnist' -> 'fashion-mnist'"``.
    """
    current = asdict(recipe)
    return ", ".join(
        f"{key} {stored.get(key)!r} -> {value!r}" for key, value in current.items() if stored.get(key) != value
    )
