"""mnistseg: semantic segmentation on MNIST, for learning and teaching PyTorch.

The public names a tutorial uses::

    from mnistseg import SegmentationMNIST, SimpleUNet, MaskScoring

and, for a picture of your own, ``mnistseg.predict(image, model)`` (the function
:func:`mnistseg.predict.predict`; the module's other names import as
``from mnistseg.predict import describe_mask``).
"""

from importlib.metadata import PackageNotFoundError, version

from mnistseg.data import SegmentationMNIST
from mnistseg.metrics import MaskScoring
from mnistseg.model import SimpleUNet
from mnistseg.predict import predict

try:
    __version__ = version("mnistseg")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = ["MaskScoring", "SegmentationMNIST", "SimpleUNet", "__version__", "predict"]
