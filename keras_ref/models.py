"""Seed 000's ``model_cnn`` and seed 001's ``model_cifar10``, as the notebooks write them.

The only change is ``from tensorflow.keras import ...`` → ``import keras``
(Keras 3), and each model built in a function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import keras
from keras import layers, models


def model_cnn() -> Any:
    """Seed 000, cell In [4] (functional API)."""
    input_layer = layers.Input(shape=(32, 32, 3))
    conv_layer_1 = layers.Conv2D(
        filters=10,
        kernel_size=(4, 4),
        strides=2,
        padding="same",
    )(input_layer)
    conv_layer_2 = layers.Conv2D(
        filters=20,
        kernel_size=(3, 3),
        strides=2,
        padding="same",
    )(conv_layer_1)
    flatten_layer = layers.Flatten()(conv_layer_2)
    output_layer = layers.Dense(units=10, activation="softmax")(flatten_layer)
    model_cnn = models.Model(input_layer, output_layer)
    return model_cnn


def model_cifar10() -> Any:
    """Seed 001, cell In [6] (Sequential)."""
    model_cifar10 = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(32, 3, padding="valid", activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(),  # pool_size=(2,2) by default
            layers.Conv2D(128, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )
    return model_cifar10


MODELS: dict[str, Callable[[], Any]] = {"model_cnn": model_cnn, "model_cifar10": model_cifar10}


@contextmanager
def dtype_scope(dtype: str) -> Iterator[None]:
    """Build Keras layers in ``dtype``, restoring the previous settings afterwards.

    Keras 3 needs both: ``floatx`` (inputs and losses follow it) and the dtype
    policy (frozen into each layer when it is created).
    """
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx(dtype)
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def build_model(name: str, dtype: str | None = None) -> Any:
    """A fresh Keras reference model (in ``dtype``, e.g. "float64", when given).

    An unknown name raises ``ValueError`` listing the known ones.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}. Known models: {', '.join(sorted(MODELS))}")
    if dtype is None:
        return MODELS[name]()
    with dtype_scope(dtype):
        return MODELS[name]()
