"""Converters: BatchNormalization and the Normalization preprocessing layer.

``BatchNormalization`` becomes ``torch_cnn.layers.norm.BatchNorm2d`` on maps and
``BatchNorm1d`` otherwise: torch's classes with Keras's epsilon, momentum
convention, biased moving variance and frozen-layer semantics
(keras/src/layers/normalization/batch_normalization.py). Only the channel axis
(Keras's last) is supported, and neither batch renormalization nor Keras 2's
``virtual_batch_size``/``adjustment``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from torch_cnn.convert.builtin.core import keras_constant
from torch_cnn.convert.registry import BuildContext, Converted, KerasCall, register_keras_layer
from torch_cnn.convert.registry import single_input as _single_input
from torch_cnn.layers.norm import (
    KERAS_BN_EPSILON,
    KERAS_BN_MOMENTUM,
    BatchNorm1d,
    BatchNorm2d,
    Normalization,
)
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import WeightMap

__all__: list[str] = []


def _number(call: KerasCall, key: str, default: float) -> float:
    value = call.config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise call.error(f"{key} must be a number. Received: {key}={value!r}")
    return float(value)


@register_keras_layer("BatchNormalization")
def batch_normalization(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """keras.layers.BatchNormalization over the channel axis, inference and training."""
    spec = _single_input(call, inputs)
    cfg = call.config
    axis = cfg.get("axis", -1)
    if isinstance(axis, list | tuple) and len(axis) == 1:  # Keras 2 stores [3]
        axis = axis[0]
    rank = len(spec.shape)
    if not isinstance(axis, int) or isinstance(axis, bool) or spec.keras_axis(axis) != rank:
        raise call.error(
            f"only the channel axis (-1) is supported; received axis={cfg.get('axis')!r} for "
            f"a {spec.keras_str()} input"
        )
    if cfg.get("renorm"):
        raise call.error("batch renormalization (renorm=True) is not supported")
    for key in ("virtual_batch_size", "adjustment"):  # Keras 2 options
        if cfg.get(key) is not None:
            raise call.error(f"{key}={cfg[key]!r} is not supported")
    channels = spec.shape[-1]
    if channels is None:
        raise call.error(f"needs the number of channels; received {spec.keras_str()}")
    momentum = _number(call, "momentum", KERAS_BN_MOMENTUM)
    eps = _number(call, "epsilon", KERAS_BN_EPSILON)
    center = bool(cfg.get("center", True))
    scale = bool(cfg.get("scale", True))
    options = {
        "eps": eps,
        "momentum": momentum,
        "center": center,
        "scale": scale,
        "trainable": bool(cfg.get("trainable", True)),
        "synchronized": bool(cfg.get("synchronized", False)),
        **ctx.factory,
    }
    if spec.is_map:
        module: BatchNorm1d | BatchNorm2d = BatchNorm2d(channels, **options)
        module.bessel_moving_variance = ctx.keras2  # tf_keras's fused kernel on 4-D inputs
    else:
        module = BatchNorm1d(channels, channel_dim=1 if rank == 1 else -1, **options)
    shape = (channels,)
    weights = []
    if scale:
        weights.append(WeightMap("gamma", "weight", shape))
    if center:
        weights.append(WeightMap("beta", "bias", shape))
    weights.append(WeightMap("moving_mean", "running_mean", shape))
    weights.append(WeightMap("moving_variance", "running_var", shape))
    return Converted(module, spec, weights=tuple(weights))


def _reshape_to_torch(a: np.ndarray, keras_shape: tuple[int, ...], is_map: bool) -> np.ndarray:
    a = a.reshape(keras_shape)
    return a.transpose(2, 0, 1) if is_map else a


def _reshape_to_keras(a: np.ndarray, var_shape: tuple[int, ...], is_map: bool) -> np.ndarray:
    if is_map:
        a = a.transpose(1, 2, 0)
    return a.reshape(var_shape)


@register_keras_layer("Normalization")
def normalization(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Normalization: ``(x - mean) / max(sqrt(variance), 1e-7)``, invert=False."""
    spec = _single_input(call, inputs)
    cfg = call.config
    if cfg.get("invert", False):
        raise call.error("invert=True is not supported")
    axis = cfg.get("axis", -1)
    axes = [] if axis is None else ([axis] if isinstance(axis, int) else list(axis))
    ndim = len(spec.shape) + 1
    try:
        keep = sorted({spec.keras_axis(int(a)) for a in axes})
    except (TypeError, ValueError) as exc:
        raise call.error(f"axis={axis!r}: {exc}") from None
    if 0 in keep:
        raise call.error(f"statistics per batch position are not supported. Received: axis={axis}")
    sizes = [spec.shape[d - 1] for d in keep]
    if any(s is None for s in sizes):
        raise call.error(f"axis={axis!r} needs known sizes; received {spec.keras_str()}")
    var_shape = tuple(int(s) for s in sizes if s is not None)
    # Keras's broadcast shape without the batch axis, then torch layout.
    keras_shape = tuple(int(spec.shape[d - 1] or 1) if d in keep else 1 for d in range(1, ndim))
    torch_shape = (keras_shape[2], keras_shape[0], keras_shape[1]) if spec.is_map else keras_shape
    mean, variance = cfg.get("mean"), cfg.get("variance")
    if (mean is None) != (variance is None):
        raise call.error("mean and variance must both be given or both be absent")
    if mean is None:  # adapted: Keras variables mean, variance, count
        module = Normalization(torch_shape, variables=True, **ctx.factory)
        to_torch = partial(_reshape_to_torch, keras_shape=keras_shape, is_map=spec.is_map)
        to_keras = partial(_reshape_to_keras, var_shape=var_shape, is_map=spec.is_map)
        weights = (
            WeightMap("mean", "mean", var_shape, to_torch, to_keras),
            WeightMap("variance", "variance", var_shape, to_torch, to_keras),
            WeightMap("count", "count", (), kinds="iuf"),
        )
        return Converted(module, spec, weights=weights)
    module = Normalization(torch_shape, variables=False, **ctx.factory)
    for name, value in (("mean", mean), ("variance", variance)):
        array = keras_constant(call, name, value)  # Python floats: through float32, as Keras
        if array.ndim > len(var_shape):
            raise call.error(f"{name} of shape {array.shape} has more axes than axis={axis!r}")
        if array.ndim == 0:
            full = np.broadcast_to(array, keras_shape)
        else:  # Keras aligns the statistics' axes with the kept axes from the right
            expanded = [1] * (ndim - 1)
            for i in range(1, array.ndim + 1):
                expanded[keep[-i] - 1] = array.shape[-i]
            full = np.broadcast_to(array.reshape(expanded), keras_shape)
        tensor = getattr(module, name)
        with torch.no_grad():
            tensor.copy_(_as_tensor(_reshape_to_torch(np.array(full), keras_shape, spec.is_map)))
    return Converted(module, spec)


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
