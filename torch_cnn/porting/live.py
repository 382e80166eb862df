"""Live Keras models (duck-typed: Keras need not be importable here) as records, and back."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from torch_cnn.porting.records import KerasLayer, KerasModelRecord
from torch_cnn.porting.transforms import keras_to_torch, torch_to_keras


def record_from_keras_model(keras_model: Any) -> KerasModelRecord:
    """Describe a live Keras model (duck-typed: Keras need not be importable here)."""
    layers = []
    for layer in keras_model.layers:
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        weights = tuple(np.asarray(w) for w in layer.get_weights())
        layers.append(KerasLayer(layer.name, cls, layer.get_config(), weights))
    shape = getattr(keras_model, "input_shape", None)
    input_shape = tuple(shape[1:]) if isinstance(shape, tuple | list) else None
    name = getattr(keras_model, "name", "?")
    return KerasModelRecord(f"Keras model {name!r}", tuple(layers), input_shape)


def export_to_keras_model(model: nn.Module, keras_model: Any) -> Any:
    """Copy ``model``'s weights into a live Keras model; checks everything before setting any."""
    record = record_from_keras_model(keras_model)
    keras_to_torch(record, model)  # the same structural and shape checks as an import
    weights = torch_to_keras(model)
    layers = [layer for layer in keras_model.layers if type(layer).__name__ != "InputLayer"]
    for layer, arrays in zip(layers, weights, strict=True):
        if arrays:
            dtype = np.dtype(layer.get_weights()[0].dtype)
            layer.set_weights([a.astype(dtype, copy=False) for a in arrays])
    return keras_model
