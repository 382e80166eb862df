"""Converters: Dense, Identity, Rescaling and the noise layers (Dropout & co.).

``Dense`` becomes ``nn.Linear`` (``ChannelLinear`` on an image map, where Keras's
last axis is torch's dim 1) and folds a torch-order ``Flatten`` into its kernel rows
(``porting.dense_kernel_to_torch``). Noise layers are the identity in eval mode and
draw from torch's generator in training mode (see ``torch_cnn.layers.regularization``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from torch_cnn.convert.builtin.activation import fused_activation
from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    channels_last,
    register_keras_layer,
    single_input,
)
from torch_cnn.layers.core import ChannelLinear, Rescaling
from torch_cnn.layers.regularization import GaussianDropout, GaussianNoise, NoiseShapeDropout
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import WeightMap
from torch_cnn.porting import dense_kernel_to_torch, dense_weight_to_keras

__all__ = ["broadcast_shape", "constant_to_torch", "keras_constant", "refuse_quantized"]


def refuse_quantized(call: KerasCall) -> None:
    """Refuse a layer whose dtype policy is quantized (int8/int4/float8/GPTQ/AWQ variables)."""
    dtype = call.config.get("dtype")
    name = dtype
    if isinstance(dtype, Mapping):
        cls = str(dtype.get("class_name", ""))
        cfg = dtype.get("config")
        name = cfg.get("name") if isinstance(cfg, Mapping) else None
        if "Quantized" in cls or cls.startswith(("GPTQ", "AWQ")):
            raise call.error(f"quantized layers are not supported. Received: dtype={dtype!r}")
    if isinstance(name, str) and "_from_" in name:  # "int8_from_float32"
        raise call.error(f"quantized layers are not supported. Received: dtype policy {name!r}")


def keras_constant(call: KerasCall, key: str, value: Any) -> np.ndarray:
    """A number or array from a config as Keras turns it into a tensor.

    ``tf.convert_to_tensor`` makes Python floats (and lists of them) float32, ints int32;
    a ``__numpy__`` entry keeps its dtype. So ``Rescaling(1 / 255)`` multiplies by
    ``float32(1 / 255)`` even in a float64 model.
    """
    if isinstance(value, Mapping) and value.get("class_name") == "__numpy__":
        cfg = value.get("config", {})
        try:
            array = np.asarray(cfg["value"], dtype=np.dtype(cfg.get("dtype", "float32")))
        except (KeyError, TypeError, ValueError) as exc:
            raise call.error(f"{key}: cannot read the array {value!r}: {exc}") from None
    else:
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as exc:
            raise call.error(f"{key} must be a number or an array. Received: {value!r}") from exc
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        elif array.dtype.kind in "iub":
            array = array.astype(np.int32)
    if array.dtype.kind not in "fiub":
        raise call.error(f"{key} must be numeric. Received: {key}={value!r}")
    return array


def broadcast_shape(
    call: KerasCall, shapes: Sequence[Sequence[int | None]]
) -> tuple[int | None, ...]:
    """Per-sample shapes broadcast right-aligned, as Keras's ``Merge`` computes its output shape.

    keras/src/layers/merging/base_merge.py: an unknown size on either side stays unknown.
    """
    rank = max(len(s) for s in shapes)
    out: list[int | None] = [1] * rank
    for s in shapes:
        padded = [1] * (rank - len(s)) + list(s)
        for k, (i, j) in enumerate(zip(out, padded, strict=True)):
            if i is None or j is None:
                out[k] = None
            elif i == 1:
                out[k] = j
            elif j != 1 and i != j:
                raise call.error(
                    "inputs have incompatible shapes: "
                    + ", ".join("(None, " + ", ".join(map(str, x)) + ")" for x in shapes)
                )
    return tuple(out)


def constant_to_torch(call: KerasCall, array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """A constant that broadcasts against Keras's ``(batch, *spec.shape)`` in torch layout.

    A leading size-1 batch axis is dropped; on a map the (H, W, C) trailing axes
    become (C, H, W) (a per-channel ``(C,)`` is ``(C, 1, 1)``).
    """
    a = np.asarray(array)
    rank = len(spec.shape)
    if a.ndim == rank + 1:
        if a.shape[0] != 1:
            raise call.error(f"a constant of shape {a.shape} varies over the batch axis")
        a = a[0]
    if a.ndim > rank:
        raise call.error(f"a constant of shape {a.shape} does not fit {spec.keras_str()}")
    broadcast_shape(call, [spec.shape, a.shape])  # checks that it broadcasts
    if spec.is_map and a.ndim > 0:
        a = a.reshape((1,) * (3 - a.ndim) + a.shape).transpose(2, 0, 1)
    return a


# --- Dense --------------------------------------------------------------------------------


@register_keras_layer("Dense", reads_flatten_order=True)
def dense(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Dense: ``activation(x @ kernel + bias)`` over the last Keras axis."""
    spec = single_input(call, inputs)
    cfg = call.config
    refuse_quantized(call)
    if cfg.get("lora_rank"):
        raise call.error(f"LoRA layers are not supported. Received: lora_rank={cfg['lora_rank']}")
    units = cfg.get("units")
    if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
        raise call.error(f"units must be a positive int. Received: units={units!r}")
    if not spec.shape or spec.shape[-1] is None:
        raise call.error(
            f"needs the size of its input's last axis to build its kernel; received "
            f"{spec.keras_str()}"
        )
    fan_in = int(spec.shape[-1])
    use_bias = bool(cfg.get("use_bias", True))
    chw = spec.chw
    if chw is not None and (len(spec.shape) != 1 or chw[0] * chw[1] * chw[2] != fan_in):
        raise call.error(f"a torch-order Flatten of {chw} does not fit {spec.keras_str()}")
    module: nn.Linear
    if spec.is_map:
        module = ChannelLinear(fan_in, units, bias=use_bias, **ctx.factory)
    else:
        module = nn.Linear(fan_in, units, bias=use_bias, **ctx.factory)
    out = TensorSpec((*spec.shape[:-1], units))
    weights = [
        WeightMap(
            "kernel",
            "weight",
            (fan_in, units),
            partial(dense_kernel_to_torch, chw=chw),
            partial(dense_weight_to_keras, chw=chw),
        )
    ]
    if use_bias:
        weights.append(WeightMap("bias", "bias", (units,)))
    act = fused_activation(call, cfg.get("activation"), out)
    return Converted(module, out, weights=tuple(weights), activation=act)


@register_keras_layer("Identity", keeps_feature_order=True)
def identity(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Identity."""
    return Converted(nn.Identity(), single_input(call, inputs))


@register_keras_layer("Rescaling")
def rescaling(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Rescaling: ``x * scale + offset`` (numbers or arrays over Keras's axes)."""
    spec = single_input(call, inputs)
    if "scale" not in call.config:
        raise call.error("the config has no 'scale' entry")
    scale = constant_to_torch(call, keras_constant(call, "scale", call.config["scale"]), spec)
    offset = constant_to_torch(
        call, keras_constant(call, "offset", call.config.get("offset", 0.0)), spec
    )
    out = TensorSpec(broadcast_shape(call, [spec.shape, _keras_shape(scale, spec)]))
    out = TensorSpec(broadcast_shape(call, [out.shape, _keras_shape(offset, spec)]))
    return Converted(Rescaling(scale, offset, **ctx.factory), out)


def _keras_shape(torch_const: np.ndarray, spec: TensorSpec) -> tuple[int, ...]:
    shape = tuple(torch_const.shape)
    if spec.is_map and len(shape) == 3:
        return (shape[1], shape[2], shape[0])
    return shape


# --- noise layers -------------------------------------------------------------------------


def _rate(call: KerasCall, key: str = "rate", upper_open: bool = False) -> float:
    value = call.config.get(key)
    rate = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else -1.0
    if not (0.0 <= rate < 1.0 if upper_open else 0.0 <= rate <= 1.0):
        bound = "[0, 1)" if upper_open else "[0, 1]"
        raise call.error(f"{key} must be a number in {bound}. Received: {key}={value!r}")
    return rate


def _torch_noise_shape(
    call: KerasCall, noise_shape: Sequence[Any], spec: TensorSpec
) -> tuple[int | None, ...]:
    rank = len(spec.shape) + 1
    if len(noise_shape) != rank or not all(
        d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in noise_shape
    ):
        raise call.error(
            f"noise_shape must have {rank} entries (ints or None) for a {spec.keras_str()} "
            f"input. Received: noise_shape={list(noise_shape)}"
        )
    shape = tuple(noise_shape)
    for d, size in zip(shape[1:], spec.shape, strict=True):
        if d is not None and d != 1 and size is not None and d != size:
            raise call.error(f"noise_shape {list(shape)} does not broadcast to {spec.keras_str()}")
    if spec.is_map:
        n, h, w, c = shape
        return (n, c, h, w)
    return shape


@register_keras_layer("Dropout", keeps_feature_order=True)
def dropout(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Dropout: ``nn.Dropout``, or one draw per ``noise_shape`` entry."""
    spec = single_input(call, inputs)
    rate = _rate(call)
    noise_shape = call.config.get("noise_shape")
    if noise_shape is None:
        return Converted(nn.Dropout(rate), spec)
    if not isinstance(noise_shape, list | tuple):
        raise call.error(f"noise_shape must be a list. Received: noise_shape={noise_shape!r}")
    return Converted(NoiseShapeDropout(rate, _torch_noise_shape(call, noise_shape, spec)), spec)


@register_keras_layer("SpatialDropout1D")
def spatial_dropout1d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """keras.layers.SpatialDropout1D on ``(steps, channels)``: whole channels per sample."""
    spec = single_input(call, inputs)
    if len(spec.shape) != 2:
        raise call.error(f"expects (batch, steps, channels); received {spec.keras_str()}")
    return Converted(NoiseShapeDropout(_rate(call), (None, 1, None)), spec)


@register_keras_layer("SpatialDropout2D")
def spatial_dropout2d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """keras.layers.SpatialDropout2D: whole channels per sample (torch's ``nn.Dropout2d``)."""
    spec = single_input(call, inputs)
    channels_last(call)
    if not spec.is_map:
        raise call.error(f"expects an image map; received {spec.keras_str()}")
    return Converted(nn.Dropout2d(_rate(call)), spec)


@register_keras_layer("SpatialDropout3D")
def spatial_dropout3d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """keras.layers.SpatialDropout3D on ``(d1, d2, d3, channels)``: whole channels per sample."""
    spec = single_input(call, inputs)
    channels_last(call)
    if len(spec.shape) != 4:
        raise call.error(f"expects (batch, d1, d2, d3, channels); received {spec.keras_str()}")
    return Converted(NoiseShapeDropout(_rate(call), (None, 1, 1, 1, None)), spec)


@register_keras_layer("GaussianNoise", keeps_feature_order=True)
def gaussian_noise(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.GaussianNoise: ``x + N(0, stddev)`` in training."""
    spec = single_input(call, inputs)
    return Converted(GaussianNoise(_rate(call, "stddev")), spec)


@register_keras_layer("GaussianDropout", keeps_feature_order=True)
def gaussian_dropout(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.GaussianDropout: ``x * N(1, sqrt(rate / (1 - rate)))`` in training."""
    spec = single_input(call, inputs)
    return Converted(GaussianDropout(_rate(call, upper_open=True)), spec)
