"""Stage 0: the MNIST files we write are the real ones, and damage is caught by name."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from mnistseg.datasets import get_dataset
from mnistseg.prepare import (
    FASHION_MNIST,
    FASHION_MNIST_DEBIAN_DIR,
    MNIST,
    DataError,
    _NumpyOnlyUnpickler,
    debian_fashion_mnist_contents,
    decode_idx,
    encode_idx_labels,
)

# The published SHA-256 of torchvision's MNIST files (DEVELOPERS.md), written out again
# here on purpose: the test must not trust the module's own table.
PUBLISHED_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# Digits 0..9 in MNIST's training and test sets (LeCun et al.; torchvision gives the same).
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_written_files_have_the_published_sha256(data_root: Path) -> None:
    for name, expected in PUBLISHED_SHA256.items():
        digest = hashlib.sha256((data_root / "MNIST" / "raw" / name).read_bytes()).hexdigest()
        assert digest == expected, name


def test_torchvision_reads_the_root_with_the_right_label_counts(data_root: Path) -> None:
    train = torchvision.datasets.MNIST(str(data_root), train=True)
    test = torchvision.datasets.MNIST(str(data_root), train=False)
    assert train.data.shape == (60000, 28, 28) and train.data.dtype == torch.uint8
    assert torch.bincount(train.targets).tolist() == TRAIN_LABEL_COUNTS
    assert torch.bincount(test.targets).tolist() == TEST_LABEL_COUNTS
    assert test.targets[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_prepare_is_idempotent_and_keeps_a_correct_root(data_root: Path) -> None:
    path = data_root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    before = path.stat().st_mtime_ns
    get_dataset("mnist").prepare(data_root)
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_a_damaged_file_is_reported_by_name_and_left_alone(data_root: Path, tmp_path: Path, damage: str) -> None:
    shutil.copytree(data_root / "MNIST", tmp_path / "MNIST")
    victim = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-10])
    elif damage == "flip":
        data = bytearray(victim.read_bytes())
        data[100] ^= 1
        victim.write_bytes(bytes(data))
    else:
        victim.unlink()
    snapshot = victim.read_bytes() if victim.exists() else None
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        MNIST.prepare(tmp_path)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        MNIST.verify(tmp_path)
    assert (victim.read_bytes() if victim.exists() else None) == snapshot  # never "repaired" behind the user's back


def test_load_arrays_reads_what_torchvision_reads(data_root: Path) -> None:
    for train in (True, False):
        images, labels = MNIST.load_arrays(data_root, train)
        source = torchvision.datasets.MNIST(str(data_root), train=train)
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert torch.equal(images, source.data) and torch.equal(labels, source.targets)


def test_idx_decoding_by_hand_and_its_refusals() -> None:
    # IDX3: magic 0x00000803, then 2 x 1 x 3, then the six bytes row by row.
    data = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6])
    assert decode_idx(data).tolist() == [[[1, 2, 3]], [[4, 5, 6]]]
    assert decode_idx(encode_idx_labels(np.array([7, 0, 9]))).tolist() == [7, 0, 9]
    with pytest.raises(DataError, match="not an IDX file"):
        decode_idx(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DataError, match="2x1x3 but the file holds 5 bytes"):
        decode_idx(data[:-1])


def test_idx_label_encoding_by_hand() -> None:
    # IDX1: magic 2049 = 0x00000801, count 3, then one byte per label.
    assert encode_idx_labels(np.array([7, 0, 9])) == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9])


def test_the_unpickler_loads_arrays_and_refuses_anything_else() -> None:
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    loaded = _NumpyOnlyUnpickler(io.BytesIO(pickle.dumps((array, array[0]), protocol=4))).load()
    np.testing.assert_array_equal(loaded[0], array)

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo owned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
        _NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(Evil(), protocol=2))).load()


def test_fashion_mnist_without_its_package_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        replace(FASHION_MNIST, offline_source=partial(debian_fashion_mnist_contents, tmp_path / "nowhere")).prepare(
            tmp_path / "root"
        )


@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_is_read_by_torchvision(tmp_path: Path) -> None:
    get_dataset("fashion-mnist").prepare(tmp_path)
    test = torchvision.datasets.FashionMNIST(str(tmp_path), train=False)
    assert torch.bincount(test.targets).tolist() == [1000] * 10  # Fashion-MNIST is balanced
