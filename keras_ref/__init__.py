"""The Keras reference: the seed notebooks' models transcribed (``models``), their training
recipe (``recipe``), deterministic weights (``weights``), the parity zoo (``zoo``) and the
side-by-side harness the parity suite and scripts share (``side_by_side``).

Keras 3 (the ``keras`` extra) is imported by the modules that need it, when they are
first used: ``keras_ref.weights`` (NumPy only) loads without it.
"""

from __future__ import annotations

import importlib
from typing import Any

from keras_ref.preprocess import preprocess  # NumPy only

__all__ = ["MODELS", "build_model", "dtype_scope", "model_cifar10", "model_cnn", "preprocess"]

_LAZY = {
    "MODELS": "keras_ref.models",
    "build_model": "keras_ref.models",
    "dtype_scope": "keras_ref.models",
    "model_cifar10": "keras_ref.models",
    "model_cnn": "keras_ref.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'keras_ref' has no attribute {name!r}")
