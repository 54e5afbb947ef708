"""Writing results so that nothing is ever half-written: atomic files and checkpoints.

Every file mnistseg writes goes through :func:`atomic_write_bytes`: the bytes go to a
temporary file in the same folder, are flushed to disk, and the temporary file is then
renamed over the target. A rename within one file system is atomic, so a reader (or a
run killed at any moment) sees the previous version or the new one, never a torn file.

A checkpoint is a folder with ``model.safetensors`` (the weights, no pickle) and
``config.json`` (what is needed to rebuild the model and to know where it came from).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from mnistseg.model import ModelConfig, SimpleUNet

WEIGHTS_FILE = "model.safetensors"
LAST_WEIGHTS_FILE = "last.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(Exception):
    """A checkpoint folder is missing, incomplete or unreadable."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600 files; results are for reading
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def save_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Save a model's ``state_dict`` as safetensors, atomically.

    Tensors are made contiguous on the CPU first: safetensors stores plain row-major
    buffers, and ``channels_last`` weights are not.
    """
    atomic_write_bytes(path, save_safetensors_bytes(cpu_state_dict(model)))


def cpu_state_dict(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module's ``state_dict`` as contiguous CPU tensors (what safetensors stores), names prefixed."""
    return {prefix + name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}


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


def read_checkpoint_config(folder: str | Path) -> dict[str, Any]:
    """Read ``<folder>/config.json``.

    Raises:
        CheckpointError: if the folder or file is missing or the JSON does not parse.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; is {folder} a folder written by `mnistseg train`?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise CheckpointError(f"{path} has no 'model' section; it was not written by `mnistseg train`")
    return config


def load_model(folder: str | Path, weights_file: str = WEIGHTS_FILE) -> tuple[SimpleUNet, dict[str, Any]]:
    """Rebuild the model a checkpoint folder describes and load its weights (on the CPU).

    Args:
        folder: a folder written by ``mnistseg train``.
        weights_file: ``model.safetensors`` (best by validation IoU) or ``last.safetensors``.

    Returns:
        ``(model in eval mode, config dict from config.json)``.

    Raises:
        CheckpointError: if anything is missing, unreadable or does not fit the model.
    """
    config = read_checkpoint_config(folder)
    try:
        model_config = ModelConfig(**config["model"])
        model = SimpleUNet.from_config(model_config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{Path(folder) / CONFIG_FILE} has an invalid 'model' section ({error})") from None
    state = load_weights(Path(folder) / weights_file)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise CheckpointError(
            f"{Path(folder) / weights_file} does not fit the model in config.json ({first_line})"
        ) from None
    return model.eval(), config
