"""Deterministic Keras weights for the parity suite, and the seed models under other names.

NumPy only at import (Keras models are duck-typed): test modules import it where Keras is
not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Layer names no Keras default would give, some of them defaults of *other* layers
# (model_cnn's convs swap conv2d and conv2d_1): a reader that went by names would fail.
CUSTOM_NAMES = {
    "model_cnn": ("conv2d_1", "conv2d", "flat", "head"),
    "model_cifar10": ("stem", "pool_a", "mid", "pool_b", "top", "flat", "hidden", "logits"),
}


def with_custom_names(model: Any, name: str) -> Any:
    """A clone of keras_ref's ``name`` model whose layers carry ``CUSTOM_NAMES[name]``."""
    import keras

    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    new = dict(zip([layer.name for layer in layers], CUSTOM_NAMES[name], strict=True))

    def rename(layer: Any) -> Any:
        return type(layer).from_config({**layer.get_config(), "name": new[layer.name]})

    return keras.models.clone_model(model, clone_function=rename)


def seeded_keras_weights(keras_model: Any, seed: int) -> list[np.ndarray]:
    """Glorot-uniform kernels and non-zero biases from a seeded NumPy RNG, set on ``keras_model``.

    Non-zero biases matter: Keras's zero default would hide a bias that was not copied.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for w in keras_model.get_weights():
        if w.ndim > 1:
            fan_in, fan_out = int(np.prod(w.shape[:-1])), w.shape[-1]
            if w.ndim == 4:  # conv (kh, kw, in, out): Keras's receptive-field fans
                fan_out = w.shape[0] * w.shape[1] * w.shape[3]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, w.shape).astype(w.dtype))
        else:
            weights.append(rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype))
    keras_model.set_weights(weights)
    return weights
