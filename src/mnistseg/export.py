"""Stage 8: ship the model. ONNX export, and running the exported file with ONNX Runtime.

The exported graph takes float32 images ``[N, 1, H, W]`` (named ``images``) with dynamic
batch, height and width (H and W divisible by 4) and returns logits ``[N, 11, H, W]``
(named ``logits``). ONNX Runtime (``pip install onnxruntime``) runs it without PyTorch.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from mnistseg.storage import atomic_write_bytes, load_model

ONNX_OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write a checkpoint's best weights as an ONNX model with dynamic batch, height and width.

    Args:
        checkpoint: folder written by ``mnistseg train``.
        out: the ``.onnx`` file (default ``<checkpoint>/model.onnx``).

    Returns:
        The written path.
    """
    model, _ = load_model(checkpoint)
    path = Path(out) if out is not None else Path(checkpoint) / "model.onnx"
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


class OnnxModel(nn.Module):
    """An exported model run by ONNX Runtime, callable like the PyTorch model.

    Args:
        path: an ``.onnx`` file written by :func:`export_onnx`.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        try:
            import onnxruntime
        except ImportError:
            raise ValueError("the onnx engine needs ONNX Runtime: pip install onnxruntime") from None
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist; write it with `mnistseg export --checkpoint DIR`")
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # lets callers ask for .device

    def forward(self, images: Tensor) -> Tensor:
        """Logits float32 ``[N, 11, H, W]`` for images float32 ``[N, 1, H, W]`` (on the CPU)."""
        array = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        (logits,) = self.session.run(["logits"], {"images": array})
        return torch.from_numpy(logits)
