"""Shared fixtures: one real MNIST root per test session, written by the real code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mnistseg.prepare import prepare

# Albumentations (optional, tested when installed) asks the network for updates on import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with MNIST prepared from the packaged copy (about 5 s)."""
    root = tmp_path_factory.mktemp("data")
    prepare(root, "mnist")
    return root
