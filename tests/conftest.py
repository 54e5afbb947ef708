"""Shared fixtures: one real MNIST root per test session, written by the real code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mnistseg.datasets import get_dataset
from mnistseg.device import resolve_precision

# Albumentations (optional, tested when installed) asks the network for updates on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session")
def native_precision() -> str:
    """What "auto" resolves to on this CPU: bf16 with native bf16, else fp32 (tests/test_device.py checks the rule)."""
    return resolve_precision("auto", torch.device("cpu"))


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with MNIST prepared from the packaged copy (about 5 s)."""
    root = tmp_path_factory.mktemp("data")
    get_dataset("mnist").prepare(root)
    return root


@pytest.fixture(scope="session")
def trained_checkpoint(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast preset as ``mnistseg train`` trains it, single digits; 15-45 s.

    Good enough to read clear digits: the predict and serve tests check the digits it finds,
    among them docs/your-images.md's example output, written from a native-bf16 CPU's ``runs/fast``.
    Where the CPU trains in float32 it is that class's ``fast`` (``recipes.FP32_CPU_CHANGES``).
    """
    out = tmp_path_factory.mktemp("trained")
    command = [sys.executable, "-m", "mnistseg", "train", "--root", str(data_root), "--out", str(out),
               "--device", "cpu"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out
