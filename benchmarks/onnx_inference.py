"""Inference speed on the CPU: PyTorch against ONNX Runtime, same weights, same test set.

Exports a checkpoint (default ``runs/fast``, what ``make run`` trains) to ONNX, then
segments the 10k MNIST test images in batches of 1,000 with PyTorch (float32 in the default
NCHW layout and in ``channels_last``, and bf16 ``channels_last``) and with ONNX Runtime
(float32), three timed passes each after one
warm-up pass, and reports the best pass. Also checks that the engines agree.

Usage::

    .venv/bin/python benchmarks/onnx_inference.py --root data --checkpoint runs/fast
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mnistseg.checkpoint import load_model
from mnistseg.data import load_arrays
from mnistseg.device import autocast
from mnistseg.export import export_onnx
from mnistseg.inference import OnnxModel
from record import write_record

CPU = torch.device("cpu")


def images_per_second(run: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor]) -> float:
    """Best of three timed passes over all batches, after a warm-up pass."""
    for batch in batches:
        run(batch)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for batch in batches:
            run(batch)
        best = min(best, time.perf_counter() - started)
    return sum(len(batch) for batch in batches) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"), help="data root (default: data)")
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/fast"), help="checkpoint (default: runs/fast)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/onnx_inference.json"),
                        help="result file (default: benchmarks/results/onnx_inference.json)")  # fmt: skip
    args = parser.parse_args()

    model, _ = load_model(args.checkpoint)
    images, _ = load_arrays(args.root, train=False)
    batches = list((images.unsqueeze(1).float() / 255).split(1000))  # 10 x (1000, 1, 28, 28)
    with tempfile.TemporaryDirectory() as scratch:
        engine = OnnxModel(export_onnx(args.checkpoint, Path(scratch) / "model.onnx"))
        # Module.to(memory_format=...) changes the module in place: keep a separate copy.
        fast_layout = copy.deepcopy(model).to(memory_format=torch.channels_last)

        @torch.inference_mode()
        def pytorch_fp32(batch: torch.Tensor) -> torch.Tensor:
            return model(batch)

        @torch.inference_mode()
        def pytorch_fp32_channels_last(batch: torch.Tensor) -> torch.Tensor:
            return fast_layout(batch.contiguous(memory_format=torch.channels_last))

        @torch.inference_mode()
        def pytorch_bf16(batch: torch.Tensor) -> torch.Tensor:
            with autocast(CPU, "bf16"):
                return fast_layout(batch.contiguous(memory_format=torch.channels_last)).float()

        with torch.inference_mode():
            agreement = (engine(batches[0]).argmax(1) == model(batches[0]).argmax(1)).float().mean().item()
        rows = {
            "pytorch_fp32": images_per_second(pytorch_fp32, batches),
            "pytorch_fp32_channels_last": images_per_second(pytorch_fp32_channels_last, batches),
            "pytorch_bf16_channels_last": images_per_second(pytorch_bf16, batches),
            "onnxruntime_fp32": images_per_second(engine, batches),
        }
    print(f"{'engine':<28} {'images/s':>9} {'vs PyTorch fp32':>16}")
    for name, speed in rows.items():
        print(f"{name:<28} {speed:>9.0f} {speed / rows['pytorch_fp32']:>15.2f}x")
    print(f"argmax agreement ONNX Runtime vs PyTorch (1,000 images): {agreement:.6f}")
    write_record(args.json, images_per_s=rows, argmax_agreement=agreement)


if __name__ == "__main__":
    main()
