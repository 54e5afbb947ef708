"""A trained model on disk: the folder ``mnistseg train`` writes, and its one typed record.

A checkpoint is a folder with ``model.safetensors`` (the weights with the best validation
IoU, no pickle), ``last.safetensors`` and ``config.json``. ``config.json`` is a
:class:`CheckpointRecord` as JSON: everything needed to rebuild the model, to know how it
was trained and on which data, and to resume it. :func:`write_record` is its one writer,
:func:`read_record` its one reader; every other module uses the record's fields.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from mnistseg.datasets import get_dataset
from mnistseg.files import atomic_write_bytes, atomic_write_json
from mnistseg.model import ModelConfig, SimpleUNet
from mnistseg.recipes import Recipe, recipe_differences

# The recipe's fields that config.json keeps outside its "recipe" section: the network's (in
# "model", the input's normalisation as its mean and std) and how the model is used ("inference").
NETWORK_FIELDS = ("widths", "input_to_head", "decoder", "bottleneck_blocks", "half_scores", "normalize")
INFERENCE_FIELDS = ("tta", "vote", "min_part_share")
WEIGHTS_FILE = "model.safetensors"
LAST_WEIGHTS_FILE = "last.safetensors"
CONFIG_FILE = "config.json"
ONNX_FILE = "model.onnx"
# The small `fast` model shipped inside the package (scripts/build_bundled_model.py made it),
# so that `mnistseg predict` and `serve` work before anything is trained.
BUNDLED_MODEL = Path(__file__).resolve().parent / "bundled"


class CheckpointError(Exception):
    """A checkpoint folder is missing, incomplete, unreadable, or does not fit what is asked of it."""


def versions() -> dict[str, str]:
    """Versions of what produced a result: mnistseg, PyTorch, torchvision, Python."""
    from mnistseg import __version__

    try:
        torchvision = importlib.metadata.version("torchvision")  # without importing it (2 s)
    except importlib.metadata.PackageNotFoundError:
        torchvision = "not installed"
    return {"mnistseg": __version__, "torch": torch.__version__, "torchvision": torchvision,
            "python": platform.python_version()}  # fmt: skip


@dataclass
class CheckpointRecord:
    """What ``config.json`` holds.

    Attributes:
        recipe: the recipe trained (its data set and threshold included).
        data_root: the data root it was trained on, absolute; ``--resume`` reads from it.
        versions: of mnistseg, PyTorch, Python (see :func:`versions`).
        world_size: processes it was trained with (torchrun).
        precision: the precision it trained in: the recipe's, with "auto" resolved on the
            machine that trained it (:func:`mnistseg.device.resolve_precision`).
        best: ``{"epoch", "val"}`` of the epoch with the best validation IoU (saved as
            ``model.safetensors``), or None before the first epoch ends.
        last: the same for the last finished epoch.
        timings: seconds spent, summed over the epochs this process trained: ``setup`` (data
            and model), ``train``, ``validate`` and ``write`` (checkpoints, figures, state).
    """

    recipe: Recipe
    data_root: str | None = None
    versions: dict[str, str] = field(default_factory=versions)
    world_size: int = 1
    precision: str | None = None
    best: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision is None and self.recipe.precision != "auto":
            self.precision = self.recipe.precision  # files from before "auto" hold what ran in the recipe

    @property
    def model(self) -> ModelConfig:
        """The network's configuration."""
        return self.recipe.model

    @property
    def dataset(self) -> str:
        return self.recipe.dataset

    @property
    def class_names(self) -> tuple[str, ...]:
        """The data set's class names, background first."""
        return get_dataset(self.recipe.dataset).class_names

    @property
    def threshold(self) -> float:
        return self.recipe.threshold

    def to_json(self) -> dict[str, Any]:
        """The JSON form, each fact once: ``model`` rebuilds the network, ``recipe`` says how it
        was trained (its data set and threshold included), ``inference`` how it is used."""
        recipe = asdict(self.recipe)
        return {
            "model": asdict(self.model),
            "recipe": {key: value for key, value in recipe.items() if key not in NETWORK_FIELDS + INFERENCE_FIELDS},
            "inference": {key: recipe[key] for key in INFERENCE_FIELDS},
            "data_root": self.data_root,
            "world_size": self.world_size,
            "precision": self.precision,
            "versions": self.versions,
            "best": self.best,
            "last": self.last,
            "timings": self.timings,
        }

    @classmethod
    def from_json(cls, data: Any, source: str | Path = "config.json") -> CheckpointRecord:
        """Parse the JSON form. Older files load too: those whose recipe repeated the network and
        the inference flags, gave ``base_width``, or lack later fields (``data_root``, ...).

        Raises:
            CheckpointError: naming ``source`` when something does not fit.
        """
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
            raise CheckpointError(f"{source} has no 'model' section; it was not written by `mnistseg train`")
        known = {item.name for item in fields(Recipe)}
        stored = {key: value for key, value in (data.get("recipe") or {}).items() if key in known}
        try:
            model = ModelConfig.from_json(data["model"])
            normalize = (model.input_mean, model.input_std) != (0.0, 1.0)
            stored.update({key: getattr(model, key) for key in NETWORK_FIELDS if key != "normalize"},
                          normalize=normalize)  # fmt: skip
            stored.update({key: value for key, value in (data.get("inference") or {}).items() if key in known})
            recipe = Recipe(**stored)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{source} has an invalid 'model' or 'recipe' section ({error})") from None
        if recipe.model != model:  # e.g. an input mean and std that are not the data set's
            raise CheckpointError(f"{source}: its 'model' section is not the network its recipe builds")
        return cls(
            recipe=recipe,
            data_root=data.get("data_root"),
            versions=dict(data.get("versions") or {}),
            world_size=int(data.get("world_size", 1)),
            precision=data.get("precision"),
            best=data.get("best"),
            last=data.get("last"),
            timings=dict(data.get("timings") or {}),
        )


def write_record(folder: str | Path, record: CheckpointRecord) -> None:
    """Write ``<folder>/config.json``, atomically."""
    atomic_write_json(Path(folder) / CONFIG_FILE, record.to_json())


def read_record(folder: str | Path) -> CheckpointRecord:
    """Read ``<folder>/config.json``.

    Raises:
        CheckpointError: if the folder or file is missing, or the JSON does not parse or fit.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {folder} a folder written by `mnistseg train`?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    return CheckpointRecord.from_json(data, path)


def check_resumable(folder: str | Path, recipe: Recipe) -> CheckpointRecord:
    """The one decision whether the run in ``folder`` may continue with ``recipe``.

    Returns:
        The run's record.

    Raises:
        CheckpointError: if the folder holds no run, or one trained with another recipe
            (the message lists the fields that differ).
    """
    record = read_record(folder)
    different = recipe_differences(asdict(record.recipe), recipe)
    if different:
        raise CheckpointError(f"cannot resume {folder}: it was trained with another recipe ({different})")
    return record


def cpu_state_dict(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's ``state_dict`` as contiguous CPU tensors (what safetensors stores), names prefixed."""
    return {prefix + name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Save a model's ``state_dict`` as safetensors, atomically.

    Tensors are made contiguous on the CPU first: safetensors stores plain row-major
    buffers, and ``channels_last`` weights are not.
    """
    atomic_write_bytes(path, save_safetensors_bytes(cpu_state_dict(model)))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a CPU ``state_dict``.

    Raises:
        CheckpointError: if the file is missing or is not a valid safetensors file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_safetensors_bytes(path.read_bytes())
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path} is not a valid safetensors file ({error})") from None


def load_model(folder: str | Path, weights_file: str = WEIGHTS_FILE) -> tuple[SimpleUNet, CheckpointRecord]:
    """Rebuild the model a checkpoint folder describes and load its weights (on the CPU).

    Args:
        folder: a folder written by ``mnistseg train``.
        weights_file: ``model.safetensors`` (best by validation IoU) or ``last.safetensors``.

    Returns:
        ``(model in eval mode, its record)``.

    Raises:
        CheckpointError: if anything is missing, unreadable or does not fit the model.
    """
    record = read_record(folder)
    model = SimpleUNet.from_config(record.model)
    state = load_weights(Path(folder) / weights_file)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise CheckpointError(
            f"{Path(folder) / weights_file} does not fit the model in config.json ({first_line})"
        ) from None
    return model.eval(), record


def latest_checkpoint(runs: Path = Path("runs")) -> Path | None:
    """The most recently trained checkpoint folder under ``runs`` (one or two levels down), or None."""
    found = [
        weights.parent
        for pattern in (f"*/{WEIGHTS_FILE}", f"*/*/{WEIGHTS_FILE}")
        for weights in Path(runs).glob(pattern)
        if (weights.parent / CONFIG_FILE).is_file()
    ]
    return max(found, key=lambda folder: (folder / WEIGHTS_FILE).stat().st_mtime) if found else None


def default_checkpoint(runs: Path = Path("runs")) -> Path:
    """The model to use when none is named: the latest under ``runs``, else :data:`BUNDLED_MODEL`."""
    return latest_checkpoint(runs) or BUNDLED_MODEL


def describe_folder(folder: Path) -> str:
    """How to name a checkpoint folder to people: its path, or "the bundled model" for :data:`BUNDLED_MODEL`."""
    if Path(folder).resolve() == BUNDLED_MODEL:
        return "the bundled model (nothing trained under runs/; train your own with `mnistseg train`)"
    return str(folder)
