"""Shared fixtures: one real MNIST root per test session, written by the real code."""

from __future__ import annotations

from pathlib import Path

import pytest

from mnistseg.prepare import prepare


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data root with MNIST prepared from the packaged copy (about 5 s)."""
    root = tmp_path_factory.mktemp("data")
    prepare(root, "mnist")
    return root
