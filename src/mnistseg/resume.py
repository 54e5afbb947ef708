"""What a training run needs to continue after a kill, in one atomically written file.

At the end of every epoch rank 0 writes ``<out>/training_state.safetensors``: the weights
(and their moving average), the optimizer's moments, and as JSON metadata the epoch, the
scheduler, the history of metrics and the random generators' states of every rank. One
file, written with a rename, so a kill at any moment leaves the previous epoch's state or
the new one. ``mnistseg train --resume DIR`` reloads it and runs the remaining epochs;
with the same generators restored, the result is bit-identical to a run never killed
(on the CPU; see the README for GPUs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors_bytes
from torch import Tensor, nn

from mnistseg.checkpoint import CheckpointError, cpu_state_dict
from mnistseg.distributed import DistributedContext
from mnistseg.files import atomic_write_bytes

STATE_FILE = "training_state.safetensors"
STATE_VERSION = 1


@dataclass(frozen=True)
class TrainingParts:
    """The objects of a run whose state is saved after each epoch and restored on resume.

    Attributes:
        model: the network being trained (not its DistributedDataParallel wrapper).
        ema: the ``AveragedModel`` of its weights, or None.
        optimizer: the optimizer (its moments).
        scheduler: the learning-rate schedule, or None.
        batches: the training loader (its random generators).
    """

    model: nn.Module
    ema: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    batches: object


@dataclass
class Progress:
    """Where a run is: the last finished epoch, its metrics so far, the best so far."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_iou: float = -1.0
    config: dict[str, Any] = field(default_factory=dict)


def loader_generators(batches: object) -> list[torch.Generator]:
    """The random generators a loader draws from (order and augmentation)."""
    if hasattr(batches, "order_generator"):  # BatchedLoader
        return [batches.order_generator, batches.generator]
    generator = getattr(batches, "generator", None)  # DataLoader
    return [generator] if generator is not None else []


def _gather_generator_states(batches: object, context: DistributedContext) -> list[list[Tensor]]:
    """Every rank's generator states (rank 0 needs them all to write one file), plus torch's own."""
    mine = [generator.get_state() for generator in loader_generators(batches)] + [torch.get_rng_state()]
    if not context.enabled:
        return [mine]
    everyone: list[list[Tensor] | None] = [None] * context.world_size
    dist.all_gather_object(everyone, mine)
    return everyone  # type: ignore[return-value]


def save_training_state(path: Path, parts: TrainingParts, progress: Progress, context: DistributedContext) -> None:
    """Write the state of a run after ``progress.epoch`` (collective under torchrun; rank 0 writes)."""
    model, ema_model, optimizer, scheduler = parts.model, parts.ema, parts.optimizer, parts.scheduler
    generator_states = _gather_generator_states(parts.batches, context)
    if not context.is_main:
        return
    tensors = cpu_state_dict(model, "model.")
    if ema_model is not None:
        tensors.update(cpu_state_dict(ema_model, "ema."))
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for slot, value in slots.items():
            tensors[f"optimizer.{index}.{slot}"] = torch.as_tensor(value).detach().cpu().contiguous()
    for rank, states in enumerate(generator_states):
        for index, state in enumerate(states):
            tensors[f"rng.{rank}.{index}"] = state.cpu().contiguous()
    metadata = {
        "version": STATE_VERSION,
        "epoch": progress.epoch,
        "history": progress.history,
        "best_iou": progress.best_iou,
        "config": progress.config,
        "optimizer_param_groups": optimizer_state["param_groups"],
        "optimizer_slots": {str(index): sorted(slots) for index, slots in optimizer_state["state"].items()},
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "world_size": context.world_size,
        "generators_per_rank": len(generator_states[0]),
    }
    payload = save_safetensors_bytes(tensors, metadata={"state": json.dumps(metadata)})
    atomic_write_bytes(path, payload)


def load_training_state(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a state file: ``(tensors, metadata)``.

    Raises:
        CheckpointError: if it is missing, damaged or of another version.
    """
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; nothing to resume (was the run started by this version?)")
    try:
        with safe_open(str(path), framework="pt") as stream:
            metadata = json.loads((stream.metadata() or {})["state"])
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}  # noqa: SIM118
    except (SafetensorError, KeyError, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is not a readable training state ({error})") from None
    if metadata.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{path} was written by another version of mnistseg (state version {metadata.get('version')})"
        )
    return tensors, metadata


def like_param(saved: Tensor, param: Tensor) -> Tensor:
    """An optimizer slot as saved (contiguous) in its parameter's memory layout, if it has the parameter's shape.

    Adam's fused kernel walks a parameter and its moments as flat memory: a moment restored
    NCHW beside a ``channels_last`` weight would pair the wrong elements (the resumed run
    drifted from the uninterrupted one until this was done).
    """
    if saved.shape != param.shape:
        return saved  # e.g. the step count
    return torch.empty_like(param, dtype=saved.dtype, device="cpu").copy_(saved)


def restore_training_state(path: Path, parts: TrainingParts, context: DistributedContext) -> Progress:
    """Load a state file into a freshly built run; returns its progress.

    Raises:
        CheckpointError: if the file does not fit the run (another model, world size, ...).
    """
    tensors, metadata = load_training_state(path)
    model, ema_model, optimizer, scheduler = parts.model, parts.ema, parts.optimizer, parts.scheduler
    if metadata["world_size"] != context.world_size:
        raise CheckpointError(
            f"{path} was written by {metadata['world_size']} process(es); resume it with the same number, "
            f"not {context.world_size}"
        )

    def section(prefix: str) -> dict[str, Tensor]:
        return {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}

    try:
        model.load_state_dict(section("model."))
        if ema_model is not None:
            ema_model.load_state_dict(section("ema."))
        params = [param for group in optimizer.param_groups for param in group["params"]]
        optimizer_state = {
            "state": {
                int(index): {slot: like_param(tensors[f"optimizer.{index}.{slot}"], params[int(index)])
                             for slot in slots}
                for index, slots in metadata["optimizer_slots"].items()
            },
            "param_groups": metadata["optimizer_param_groups"],
        }  # fmt: skip
        optimizer.load_state_dict(optimizer_state)
    except (RuntimeError, KeyError, ValueError) as error:
        first_line = str(error).splitlines()[0]
        raise CheckpointError(f"{path} does not fit this run's model or optimizer ({first_line})") from None
    if scheduler is not None and metadata["scheduler"] is not None:
        scheduler.load_state_dict(metadata["scheduler"])
    device_generators = loader_generators(parts.batches)
    for index, generator in enumerate(device_generators):
        generator.set_state(tensors[f"rng.{context.rank}.{index}"])
    torch.set_rng_state(tensors[f"rng.{context.rank}.{len(device_generators)}"])
    return Progress(metadata["epoch"], metadata["history"], metadata["best_iou"], metadata["config"])
