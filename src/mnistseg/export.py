"""Stage 9: ship the model as ONNX (:class:`mnistseg.inference.OnnxModel` runs the file).

The exported graph takes float32 images ``[N, 1, H, W]`` (named ``images``) with dynamic
batch, height and width (H and W divisible by 4) and returns logits ``[N, 11, H, W]``
(named ``logits``). ONNX Runtime (the ``[onnx]`` extra: ``pip install -e '.[onnx]'``) runs it without PyTorch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch

from mnistseg.checkpoint import ONNX_FILE, load_model
from mnistseg.files import atomic_write_bytes

ONNX_OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write a checkpoint's best weights as an ONNX model with dynamic batch, height and width.

    Args:
        checkpoint: folder written by ``mnistseg train``.
        out: the ``.onnx`` file (default ``<checkpoint>/model.onnx``).

    Returns:
        The written path.

    Raises:
        ValueError: when the ``onnx`` package (the ``[onnx]`` extra) is not installed.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx.export writes the graph with it)
    except ImportError:
        raise ValueError("exporting to ONNX needs the onnx extra: pip install -e '.[onnx]'") from None
    model, _ = load_model(checkpoint)
    path = Path(out) if out is not None else Path(checkpoint) / ONNX_FILE
    example = torch.zeros(1, model.config.in_channels, 28, 28)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # Tracing turns SimpleUNet's shape checks into constants; the graph itself stays dynamic.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), buffer,
            input_names=["images"], output_names=["logits"], opset_version=ONNX_OPSET,
            dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("images", "logits")},
            dynamo=False,  # the TorchScript exporter: no extra packages needed to export
        )  # fmt: skip
    atomic_write_bytes(path, buffer.getvalue())
    return path
