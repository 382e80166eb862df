"""The seeds' training recipe in Keras, stated once: optimizer, loss, targets, compile.

Seed 000 (``model_cnn``) ends in softmax and is compiled with categorical
cross-entropy on one-hot labels; seed 001 (``model_cifar10``) returns logits and
is compiled with ``SparseCategoricalCrossentropy(from_logits=True)``. Both use
``Adam(learning_rate=1e-3)`` with accuracy as the metric.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

LEARNING_RATE = 1e-3  # the seeds' Adam(learning_rate=1e-3)
NUM_CLASSES = 10
LOSS_NAMES = {
    "model_cnn": "categorical_crossentropy(softmax, one-hot)",
    "model_cifar10": "SparseCategoricalCrossentropy(from_logits=True)",
}


def loss(name: str) -> Any:
    """The loss ``name`` is compiled with (build it inside ``dtype_scope`` for float64)."""
    if name == "model_cnn":
        return keras.losses.CategoricalCrossentropy()
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def targets(name: str, labels: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """One-hot float labels for model_cnn's categorical loss, integer labels for model_cifar10."""
    if name == "model_cnn":
        onehot: np.ndarray = np.eye(NUM_CLASSES, dtype=dtype)[labels]
        return onehot
    return labels


def compile_model(
    model: Any,
    name: str,
    *,
    optimizer: Any = None,
    metrics: tuple[str, ...] = ("accuracy",),
    **compile_kwargs: Any,
) -> Any:
    """``model.compile`` as the seeds do (``Adam(1e-3)``, the seed's loss, accuracy); returns it.

    ``compile_kwargs`` (``jit_compile``, ``steps_per_execution``) pass through.
    """
    if optimizer is None:
        optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
    model.compile(optimizer=optimizer, loss=loss(name), metrics=list(metrics), **compile_kwargs)
    return model
