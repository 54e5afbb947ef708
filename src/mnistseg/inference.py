"""Stage 5: running a trained model, the one way every stage does it.

Validation during training, ``mnistseg evaluate``, ``mnistseg predict`` and ``mnistseg
serve`` all turn images into logits with :func:`predict_logits`: autocast precision,
memory layout and test-time shift averaging are decided here and nowhere else.
:func:`load_for_inference` opens a checkpoint folder for either engine (PyTorch, or ONNX
Runtime on the exported ``model.onnx``) and takes the test-time averaging the recipe
trained for, unless told otherwise; :class:`InferenceModel` says what it runs with, and
turns logits into masks through :func:`mnistseg.postprocess.masks_from_logits` (with the
recipe's region vote, if any).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mnistseg.checkpoint import ONNX_FILE, CheckpointRecord, describe_folder, load_model, read_record
from mnistseg.device import autocast, resolve_device, resolve_precision
from mnistseg.postprocess import NETWORK_ALONE, InferencePolicy, masks_from_logits

ENGINES = ("torch", "onnx")

# Test-time averaging: the logits of the image and of its copies shifted by one pixel
# (shifted back before averaging). Flips would not do: a flipped 2 is not a 2.
TTA_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))


def shift_images(images: Tensor, dy: int, dx: int) -> Tensor:
    """Move the content of ``[N, C, H, W]`` images ``dy`` pixels down and ``dx`` right, filling with 0."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + height, left : left + width]


def predict_logits(
    model: nn.Module, images: Tensor, precision: str = "fp32", channels_last: bool = False, tta: bool = False
) -> Tensor:
    """Run the model on a batch, returning float32 logits ``[N, C, H, W]``.

    Args:
        model: the network (in eval mode for inference).
        images: float ``[N, 1, H, W]``.
        precision: autocast precision.
        channels_last: feed the model NHWC tensors.
        tta: average the logits over :data:`TTA_SHIFTS` (5 forward passes).
    """
    shifts = TTA_SHIFTS if tta else ((0, 0),)
    total = None
    for dy, dx in shifts:
        shifted = shift_images(images, dy, dx)
        if channels_last:
            shifted = shifted.contiguous(memory_format=torch.channels_last)
        with autocast(images.device, precision):
            logits = shift_images(model(shifted).float(), -dy, -dx)
        total = logits if total is None else total + logits
    return total / len(shifts)


class OnnxModel(nn.Module):
    """An exported model run by ONNX Runtime, callable like the PyTorch model.

    Args:
        path: an ``.onnx`` file written by :func:`mnistseg.export.export_onnx`.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise ValueError("the onnx engine needs ONNX Runtime, the onnx extra: pip install -e '.[onnx]'") from None
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist; write it with `mnistseg export --checkpoint DIR`")
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # lets callers ask for .device

    def forward(self, images: Tensor) -> Tensor:
        """Logits float32 ``[N, 11, H, W]`` for images float32 ``[N, 1, H, W]`` (on the CPU)."""
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(["logits"], {"images": array})
        return torch.from_numpy(logits)


@dataclass
class InferenceModel:
    """A network and the way it is to be run.

    Attributes:
        network: a :class:`~mnistseg.model.SimpleUNet` in eval mode, or an :class:`OnnxModel`.
        device: where its inputs go.
        policy: how its logits become masks (test-time shifts, the vote), the one object
            :func:`~mnistseg.postprocess.masks_from_logits` applies for every command.
        precision: autocast precision ("fp32" for ONNX Runtime).
        channels_last: feed NHWC tensors.
        engine: "torch" or "onnx".
        record: the checkpoint's record, when it came from one.
        source: where it came from, for people ("runs/fast").
    """

    network: nn.Module
    device: torch.device
    policy: InferencePolicy = NETWORK_ALONE
    precision: str = "fp32"
    channels_last: bool = False
    engine: str = "torch"
    record: CheckpointRecord | None = None
    source: str = "a model in memory"

    @torch.inference_mode()
    def logits(self, images: Tensor) -> Tensor:
        """float32 logits ``[N, C, H, W]`` (on :attr:`device`) for float images ``[N, 1, H, W]``."""
        return predict_logits(self.network, images.to(self.device), self.precision, self.channels_last, self.tta)

    @property
    def tta(self) -> bool:
        """Whether its logits are averaged over one-pixel shifts (:data:`TTA_SHIFTS`)."""
        return self.policy.tta

    def masks(self, images: Tensor) -> Tensor:
        """int64 class ids ``[N, H, W]`` for float images ``[N, 1, H, W]``, by :attr:`policy`."""
        return masks_from_logits(self.logits(images), self.policy)

    def describe(self) -> str:
        """E.g. ``"runs/best (PyTorch, cpu, bf16, test-time shifts)"``."""
        engine = "ONNX Runtime" if self.engine == "onnx" else "PyTorch"
        extras = ", test-time shifts" if self.tta else ""
        extras += f", {self.policy.vote} vote" if self.policy.vote != "none" else ""
        return f"{self.source} ({engine}, {self.device}, {self.precision}{extras})"


def as_inference_model(model: nn.Module | InferenceModel) -> InferenceModel:
    """An :class:`InferenceModel` as it is, or a bare network where its weights are: float32, no shifts, and
    the region vote of the ``fast`` and ``best`` presets (a bare network has no recipe to say otherwise)."""
    if isinstance(model, InferenceModel):
        return model
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    return InferenceModel(model.eval(), device, policy=InferencePolicy(vote="region"))


def load_for_inference(
    folder: str | Path,
    engine: str = "torch",
    device: str | torch.device = "cpu",
    tta: bool | None = None,
    precision: str = "auto",
    vote: str | None = None,
) -> InferenceModel:
    """Open a checkpoint folder for inference, run the way its recipe trained.

    Args:
        folder: written by ``mnistseg train``.
        engine: "torch" (``model.safetensors``) or "onnx" (``model.onnx`` in ONNX Runtime, on the CPU;
            the PyTorch weights are not loaded).
        device: where PyTorch runs ("cpu", "cuda", "auto", ...).
        tta: test-time shift averaging; None takes the recipe's choice.
        precision: "fp32", "bf16" or "fp16", or "auto": the fastest on this device
            (:func:`mnistseg.device.resolve_precision`), whatever the checkpoint trained in;
            fp16 only on CUDA (elsewhere it becomes fp32). The memory layout is the recipe's.
            ONNX Runtime always runs float32.
        vote: the rule of :meth:`InferenceModel.masks` ("none", "region", "parts"); None takes the recipe's.

    Raises:
        ValueError: for an unknown engine or precision, or a missing ``model.onnx``.
        CheckpointError: for a missing or damaged checkpoint.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    folder = Path(folder)
    if engine == "onnx":
        target, channels_last = torch.device("cpu"), False
        resolve_precision(precision, target)  # a bad name fails here too; ONNX Runtime runs float32
        record = read_record(folder)
        network: nn.Module = OnnxModel(folder / ONNX_FILE)
        precision = "fp32"
    else:
        target = torch.device(device) if isinstance(device, torch.device) else resolve_device(device)
        precision = resolve_precision(precision, target)  # before loading: a bad name fails fast
        network, record = load_model(folder)
        channels_last = record.recipe.channels_last
        if precision == "fp16" and target.type != "cuda":
            precision = "fp32"  # fp16 autocast is a CUDA feature
        network = network.to(target, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    recipe = record.recipe
    policy = InferencePolicy(tta=recipe.tta if tta is None else tta, vote=recipe.vote if vote is None else vote,
                             min_part_share=recipe.min_part_share)  # fmt: skip
    return InferenceModel(
        network=network,
        device=target,
        policy=policy,
        precision=precision,
        channels_last=channels_last,
        engine=engine,
        record=record,
        source=describe_folder(folder),
    )
