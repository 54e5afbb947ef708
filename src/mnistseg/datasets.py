"""Stage 0: every data set mnistseg knows, in one table, the only place a data set is named.

An entry says where its raw files live and what they must hash to, how to put them on
disk (:mod:`mnistseg.prepare`), how to read them as arrays, its class names and colours'
order, its image size, and whether its images are generated scenes of several digits
(:mod:`mnistseg.scenes`). The command line's choices, ``Recipe`` validation,
``SegmentationMNIST(dataset=...)``, the batches of training and evaluation, and
``mnistseg data`` all read this table; adding a data set is one entry here plus, if its
files come from somewhere new, a prepare function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from torch import Tensor

from mnistseg import prepare

DEFAULT_THRESHOLD = 0.2  # a pixel is foreground when its intensity (0..1) is over this
NUM_CLASSES = 11  # background + 10 classes
DIGIT_NAMES = ("background",) + tuple(str(digit) for digit in range(10))
FASHION_NAMES = (
    "background", "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# One colour per class id in every figure and on the drawing page: background black, then
# matplotlib's tab10 (colour-blind friendlier than a rainbow, and distinct at small sizes).
TAB10 = (
    (0.122, 0.467, 0.706), (1.000, 0.498, 0.055), (0.173, 0.627, 0.173), (0.839, 0.153, 0.157),
    (0.580, 0.404, 0.741), (0.549, 0.337, 0.294), (0.890, 0.467, 0.761), (0.498, 0.498, 0.498),
    (0.737, 0.741, 0.133), (0.090, 0.745, 0.812),
)  # fmt: skip
CLASS_COLORS = ((0.0, 0.0, 0.0),) + TAB10  # index = class id; 0 = background, black


@dataclass(frozen=True)
class DatasetSpec:
    """One data set.

    Attributes:
        name: what the command line and ``config.json`` call it.
        class_names: the 11 class names, background first.
        raw: the raw files it reads (for scenes: MNIST's, whose digits it places).
        image_size: height and width of its images.
        layout: for generated canvases of several digits (:mod:`mnistseg.scenes`), how they
            are placed: "scattered" or "rows"; None: the raw images as they are.
        hub_id: the Hugging Face hub's name for the data it comes from (model cards).
        pixel_mean: mean intensity (0..1) of its training images, measured once here.
        pixel_std: their standard deviation; a recipe with ``normalize`` feeds the network
            ``(image - pixel_mean) / pixel_std``, as pytorch/examples' MNIST does.
    """

    name: str
    class_names: tuple[str, ...]
    raw: prepare.RawFiles
    image_size: int = 28
    layout: str | None = None
    hub_id: str = "mnist"
    pixel_mean: float = 0.1307
    pixel_std: float = 0.3081

    @property
    def scenes(self) -> bool:
        """Whether its images are generated canvases of several digits, not the raw images."""
        return self.layout is not None

    def prepare(self, root: str | Path, download: bool = False) -> Path:
        """Put the raw files under ``root`` (verified); returns their folder."""
        return self.raw.prepare(Path(root), download)

    def load_arrays(self, root: str | Path, train: bool = True) -> tuple[Tensor, Tensor]:
        """The raw split after checking the files' SHA-256: ``(uint8 [N, 28, 28], int64 [N])``."""
        return self.raw.load_arrays(Path(root), train)


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "mnist": DatasetSpec("mnist", DIGIT_NAMES, prepare.MNIST),
        "fashion-mnist": DatasetSpec(
            "fashion-mnist",
            FASHION_NAMES,
            prepare.FASHION_MNIST,
            hub_id="fashion_mnist",
            pixel_mean=0.2860,
            pixel_std=0.3530,
        ),  # fmt: skip
        # 1-5 MNIST digits on a 64x64 canvas (augmented: new canvases of warped digits every epoch).
        "scenes": DatasetSpec(
            "scenes",
            DIGIT_NAMES,
            prepare.MNIST,
            image_size=64,
            layout="scattered",
            pixel_mean=0.0697,
            pixel_std=0.2345,
        ),  # fmt: skip
        # 1-3 MNIST digits side by side on a 64x64 canvas, touching and overlapping by up to 4 px.
        "rows": DatasetSpec(
            "rows",
            DIGIT_NAMES,
            prepare.MNIST,
            image_size=64,
            layout="rows",
            pixel_mean=0.0501,
            pixel_std=0.2013,
        ),  # fmt: skip
    }
)


def get_dataset(name: str) -> DatasetSpec:
    """The entry called ``name``.

    Raises:
        ValueError: for a name not in the table, listing the ones that are.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {', '.join(DATASETS)}")
    return DATASETS[name]


def preparable_names() -> tuple[str, ...]:
    """The data sets with raw files of their own (what ``mnistseg data`` can prepare)."""
    return tuple(name for name, spec in DATASETS.items() if not spec.scenes)
