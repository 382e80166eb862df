"""The seeds' preprocessing: ``x.astype("float32") / 255.0``, for train and test alike.

Seed 001 divides its *test* split by 225.0 (``X_test / 225.0``), a typo that
makes every test input about 13% brighter than what the model was trained on.
This function is the one the seeds meant; it is used for both splits.
"""

from __future__ import annotations

import numpy as np

PIXEL_SCALE = 255.0


def preprocess(x: np.ndarray) -> np.ndarray:
    """uint8 images (any layout) → float32 in [0, 1]."""
    if x.dtype != np.uint8:
        raise TypeError(f"preprocess expects uint8 images; received dtype {x.dtype}")
    return x.astype("float32") / PIXEL_SCALE
