"""Converters: Keras's activation layers (keras/src/layers/activations/).

``Activation`` becomes ``nn.Identity()`` with the activation fused, so
``model.logits()`` can skip a final softmax. ``ReLU``/``LeakyReLU``/``ELU``/
``Softmax`` become torch's own modules where they compute Keras's formula
(``LeakyReLU`` with Keras's 0.3 default and TF's float32-rounded slope), and
``PReLU`` a module whose weight is Keras's ``alpha`` in torch layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    register_keras_layer,
    single_input,
)
from torch_cnn.layers.activations import (
    KERAS_LEAKY_RELU_LAYER_SLOPE,
    KerasReLU,
    PReLU,
    Softmax,
    UnsupportedActivation,
    activation_name,
)
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import WeightMap

__all__ = ["fused_activation"]


def fused_activation(call: KerasCall, identifier: Any, spec: TensorSpec) -> str:
    """A layer's ``activation`` config entry as the name ``Converted.activation`` carries.

    A serialized activation layer (``Dense(activation=LeakyReLU(0.1))``) is carried as
    canonical JSON, which ``get_activation`` reads back.
    """
    try:
        return activation_name(identifier, spec)
    except UnsupportedActivation as exc:
        raise call.error(str(exc)) from None


def _number(call: KerasCall, key: str, default: float | None) -> float | None:
    value = call.config.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise call.error(f"{key} must be a number. Received: {key}={value!r}")
    return float(value)


def _slope32(value: float) -> float:
    return float(np.float32(value))  # TF's LeakyRelu op takes alpha as a float32 attribute


@register_keras_layer("Activation", keeps_feature_order=True)
def activation(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Activation: the identity with the activation fused."""
    spec = single_input(call, inputs)
    if "activation" not in call.config:
        raise call.error("the config has no 'activation' entry")
    name = fused_activation(call, call.config["activation"], spec)
    return Converted(nn.Identity(), spec, activation=name)


@register_keras_layer("ReLU", keeps_feature_order=True)
def relu(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.ReLU (and the ``ReLU`` op ``keras.activations.relu`` records)."""
    spec = single_input(call, inputs)
    max_value = _number(call, "max_value", None)
    slope = _number(call, "negative_slope", 0.0)
    threshold = _number(call, "threshold", 0.0)
    assert slope is not None and threshold is not None
    module: nn.Module
    if slope == 0.0 and threshold == 0.0 and max_value is None:
        module = nn.ReLU()
    elif slope == 0.0 and threshold == 0.0 and max_value == 6:
        module = nn.ReLU6()
    elif threshold == 0.0 and max_value is None:
        module = nn.LeakyReLU(_slope32(slope))  # Keras calls tf.nn.leaky_relu here
    else:
        module = KerasReLU(slope, max_value, threshold)
    return Converted(module, spec)


@register_keras_layer("LeakyReLU", keeps_feature_order=True)
def leaky_relu(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.LeakyReLU: slope ``negative_slope`` (Keras 2: ``alpha``), default 0.3."""
    spec = single_input(call, inputs)
    key = "negative_slope" if "negative_slope" in call.config else "alpha"
    slope = _number(call, key, KERAS_LEAKY_RELU_LAYER_SLOPE)
    assert slope is not None
    return Converted(nn.LeakyReLU(_slope32(slope)), spec)


@register_keras_layer("ELU", keeps_feature_order=True)
def elu(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.ELU: ``x`` for ``x > 0``, ``alpha * expm1(x)`` otherwise."""
    spec = single_input(call, inputs)
    alpha = _number(call, "alpha", 1.0)
    assert alpha is not None
    return Converted(nn.ELU(alpha), spec)


@register_keras_layer("Softmax", keeps_feature_order=True)
def softmax(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Softmax over ``axis`` (an int or a list; -1 is the channels of a map)."""
    spec = single_input(call, inputs)
    axis = call.config.get("axis", -1)
    axes = axis if isinstance(axis, list | tuple) else [axis]
    if not axes or not all(isinstance(a, int) and not isinstance(a, bool) for a in axes):
        raise call.error(f"axis must be an int or a list of ints. Received: axis={axis!r}")
    try:
        dims = sorted({spec.torch_axis(a) for a in axes})
    except ValueError as exc:
        raise call.error(str(exc)) from None
    if 0 in dims:
        raise call.error(f"softmax over the batch axis is not supported. Received: axis={axis!r}")
    if spec.chw is not None and dims != [1]:
        raise call.error("softmax over part of a torch-order Flatten output is not supported")
    module = nn.Softmax(dim=dims[0]) if len(dims) == 1 else Softmax(dims)
    return Converted(module, spec)


def _transpose(a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return a.transpose(axes)


@register_keras_layer("PReLU")
def prelu(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.PReLU: ``alpha`` of the input's shape, size 1 along ``shared_axes``."""
    spec = single_input(call, inputs)
    shared = call.config.get("shared_axes")
    if shared is None:
        shared = []
    elif isinstance(shared, int):
        shared = [shared]
    rank = len(spec.shape)
    if not all(isinstance(a, int) and 1 <= a <= rank for a in shared):
        raise call.error(
            f"shared_axes must list axes 1..{rank} of a {spec.keras_str()} input. "
            f"Received: shared_axes={call.config.get('shared_axes')!r}"
        )
    shape = [1 if (i + 1) in shared else s for i, s in enumerate(spec.shape)]
    if any(s is None for s in shape):
        raise call.error(
            f"alpha needs every unshared input size; received {spec.keras_str()} with "
            f"shared_axes={shared}"
        )
    keras_shape = tuple(int(s) for s in shape if s is not None)
    if spec.is_map:
        h, w, c = keras_shape
        torch_shape: tuple[int, ...] = (c, h, w)
        to_torch = partial(_transpose, axes=(2, 0, 1))
        to_keras = partial(_transpose, axes=(1, 2, 0))
        per_channel = h == w == 1
    else:
        torch_shape = keras_shape
        to_torch = to_keras = partial(_transpose, axes=tuple(range(rank)))
        per_channel = rank == 1
    module = PReLU(torch_shape, channel_dim=1 if per_channel else None, **ctx.factory)
    weights = (WeightMap("alpha", "weight", keras_shape, to_torch, to_keras),)
    return Converted(module, spec, weights=weights)
