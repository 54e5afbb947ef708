"""Write ``albumentations_1_1_affine.json``: the article's ``A.Affine`` as Albumentations 1.1 built it.

Not a test. Run once in a scratch environment holding the version the article used
(January 2022), then ``tests/test_augment.py`` checks mnistseg's composition against it::

    python3 -m venv /tmp/alb11
    /tmp/alb11/bin/pip install albumentations==1.1.0 scikit-image==0.20.0 "numpy<2" "opencv-python-headless<4.9"
    /tmp/alb11/bin/python tests/data/albumentations_1_1_affine.py

Each case holds the seven random draws Albumentations made (recorded as they were drawn)
and the 3x3 pixel matrix it handed to ``cv2.warpAffine``, for a 28x28 image.
"""

import json
import random
from pathlib import Path

import albumentations as A
import numpy as np
from albumentations.augmentations.geometric import transforms


class RecordingRandom:
    """Stands in for the ``random`` module inside Albumentations, recording every draw."""

    def __init__(self, seed: int) -> None:
        self.source = random.Random(seed)
        self.draws: list[float] = []

    def uniform(self, low: float, high: float) -> float:
        self.draws.append(self.source.uniform(low, high))
        return self.draws[-1]

    def randint(self, low: int, high: int) -> int:
        self.draws.append(self.source.randint(low, high))
        return self.draws[-1]

    def random(self) -> float:
        return self.source.random()


affine = A.Affine(scale=(0.85, 1.15), translate_px=(-2, 2), rotate=(-10, 10), shear=(-15, 15), always_apply=True)
cases = []
for seed in range(8):
    recorder = RecordingRandom(seed)
    transforms.random = recorder
    params = affine.get_params_dependent_on_targets({"image": np.zeros((28, 28), np.float32)})
    translate_x, translate_y, shear_x, shear_y, scale_x, scale_y, rotate = recorder.draws  # the order drawn
    cases.append(
        {
            "scale_x": scale_x,
            "scale_y": scale_y,
            "rotate": rotate,
            "shear_x": shear_x,
            "shear_y": shear_y,
            "translate_x": translate_x,
            "translate_y": translate_y,
            "matrix": params["matrix"].params.tolist(),
        }
    )
out = Path(__file__).with_suffix(".json")
out.write_text(json.dumps({"albumentations": A.__version__, "image_size": [28, 28], "cases": cases}, indent=1) + "\n")
print(f"wrote {out}")
