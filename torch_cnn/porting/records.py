"""What porting works on: a Keras model described source-neutrally, and the error it raises.

A live Keras model, a ``.keras`` archive, a ``.weights.h5`` and a legacy ``.h5``
all become a ``KerasModelRecord``: the ordered layers (class, config, weights in
Keras order) and where they came from, named in every error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class PortingError(ValueError):
    """A Keras source does not fit a torch model; the model was left unchanged."""


@dataclass(frozen=True)
class KerasLayer:
    """One Keras layer as any source describes it (a live model, a .keras archive, an .h5 file)."""

    name: str  # the user's layer name, for messages only: matching never uses it
    class_name: str  # "Conv2D", "MaxPooling2D", "Flatten", "Dense", ...
    config: Mapping[str, Any] = field(default_factory=dict)  # get_config(); {} when unknown
    weights: tuple[np.ndarray, ...] = ()  # Keras order: (kernel, bias)


@dataclass(frozen=True)
class KerasModelRecord:
    """An ordered Keras layer chain (InputLayer excluded) and where it came from."""

    source: str  # e.g. "Keras model 'functional'" or a file path, named in every error
    layers: tuple[KerasLayer, ...]
    input_shape: tuple[int, ...] | None = None  # (H, W, C) without the batch axis, when known
