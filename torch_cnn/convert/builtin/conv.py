"""Converters: Keras's 2D convolutions (Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose).

Configs are read as a ``.keras``/``.h5`` file stores them, with the defaults of the
layers' ``__init__`` where a key is missing (keras/src/layers/convolutional/). The
output shapes follow Keras's ``compute_conv_output_shape`` and
``compute_conv_transpose_output_shape``; the numbers follow TensorFlow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    pair,
    register_keras_layer,
    single_map,
)
from torch_cnn.layers.conv import (
    SeparableConv2d,
    conv_transpose_padding,
    create_conv_transpose2d,
)
from torch_cnn.layers.padding import create_conv2d
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import WeightMap
from torch_cnn.porting import conv_kernel_to_torch, conv_weight_to_keras

__all__ = [
    "conv_output_size",
    "conv_transpose_output_size",
    "depthwise_kernel_to_torch",
    "depthwise_weight_to_keras",
    "fused_activation",
    "padding_mode",
]


def fused_activation(call: KerasCall) -> str:
    """The activation a layer's config fuses in, by name ("linear" where none).

    Keras 3 and Keras 2 store built-in activations as their name; Keras 3.0 files may
    wrap it as ``{"class_name": "function", "config": "relu", ...}``.
    """
    value = call.config.get("activation")
    if value is None:
        return "linear"
    if isinstance(value, str):
        return value
    if (
        isinstance(value, dict)
        and value.get("class_name") == "function"
        and isinstance(value.get("config"), str)
    ):
        return str(value["config"])
    raise call.error(
        f"activation must be the name of a Keras activation. Received: activation={value!r}"
    )


def padding_mode(call: KerasCall) -> str:
    """``padding`` as 'valid' or 'same' (Keras lower-cases it); anything else is refused."""
    value = call.config.get("padding", "valid")
    mode = value.lower() if isinstance(value, str) else value
    if mode not in ("valid", "same"):
        raise call.error(f"padding must be 'valid' or 'same'. Received: padding={value!r}")
    return str(mode)


def _positive(call: KerasCall, key: str, default: Any = None) -> int:
    value = call.config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise call.error(f"{key} must be a positive integer. Received: {key}={value!r}")
    return value


def _positive_pair(call: KerasCall, key: str, default: Any) -> tuple[int, int]:
    value = pair(call, key, default)
    if min(value) < 1:
        raise call.error(f"{key} must be positive. Received: {key}={list(value)}")
    return value


def _window(call: KerasCall) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], str]:
    """A convolution's ``kernel_size``, ``strides``, ``dilation_rate`` and ``padding``."""
    kernel = _positive_pair(call, "kernel_size", None)
    strides = _positive_pair(call, "strides", 1)
    dilation = _positive_pair(call, "dilation_rate", 1)
    return kernel, strides, dilation, padding_mode(call)


def _use_bias(call: KerasCall) -> bool:
    value = call.config.get("use_bias", True)
    if not isinstance(value, bool):
        raise call.error(f"use_bias must be true or false. Received: use_bias={value!r}")
    return value


def conv_output_size(
    size: int | None, kernel: int, stride: int, padding: str, dilation: int
) -> int | None:
    """One spatial size of a conv's output as Keras computes it (None stays None).

    'valid': ``floor((size - k_eff) / stride) + 1``; 'same': ``ceil(size / stride)``
    (keras/src/ops/operation_utils.py, ``compute_conv_output_shape``).
    """
    if size is None:
        return None
    if padding == "same":
        return math.ceil(size / stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def conv_transpose_output_size(
    size: int | None,
    kernel: int,
    stride: int,
    padding: str,
    output_padding: int | None,
    dilation: int,
) -> int | None:
    """One spatial size of a transposed conv's output as Keras computes it (None stays None).

    keras/src/backend/common/backend_utils.py, ``_get_output_shape_given_tf_padding``.
    """
    if size is None:
        return None
    k_eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(k_eff, stride) - k_eff if output_padding is None else output_padding
        return (size - 1) * stride + k_eff + extra
    if output_padding is None:
        return size * stride
    return (size - 1) * stride + k_eff % 2 + output_padding


def _map_output(
    call: KerasCall,
    spec: TensorSpec,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    dilation: tuple[int, int],
    channels: int,
) -> TensorSpec:
    h, w, _ = spec.shape
    out = tuple(
        conv_output_size(n, k, s, padding, d)
        for n, k, s, d in zip((h, w), kernel, strides, dilation, strict=True)
    )
    if any(o is not None and o < 1 for o in out):
        raise call.error(
            f"a {kernel} kernel (dilation {dilation}, strides {strides}, padding "
            f"{padding!r}) leaves no output from an input of shape {spec.keras_str()}"
        )
    return TensorSpec((out[0], out[1], channels))


def _refuse_stride_and_dilation(
    call: KerasCall, strides: tuple[int, int], dilation: tuple[int, int]
) -> None:
    if max(strides) > 1 and max(dilation) > 1:  # as Keras's Conv2D/Conv2DTranspose __init__
        raise call.error(
            "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
            f"Received: strides={list(strides)} and dilation_rate={list(dilation)}"
        )


def _bias_row(channels: int, torch_name: str = "bias") -> WeightMap:
    return WeightMap("bias", torch_name, (channels,))


@register_keras_layer("Conv2D")
def conv2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Conv2D`` → ``nn.Conv2d`` (``Conv2dSame`` for TF's asymmetric 'same').

    Kernel ``(kh, kw, in / groups, filters)`` → weight ``(filters, in / groups, kh, kw)``.
    """
    spec, _, _, c = single_map(call, inputs)
    filters = _positive(call, "filters")
    kernel, strides, dilation, padding = _window(call)
    groups = _positive(call, "groups", 1)
    _refuse_stride_and_dilation(call, strides, dilation)
    if filters % groups or c % groups:
        raise call.error(
            f"filters and input channels must both be divisible by groups. Received: "
            f"filters={filters}, groups={groups}, input {spec.keras_str()}"
        )
    use_bias = _use_bias(call)
    module = create_conv2d(
        c, filters, kernel, strides, padding, dilation, use_bias, groups=groups, **ctx.factory
    )
    weights = [
        WeightMap(
            "kernel", "weight", (*kernel, c // groups, filters),
            conv_kernel_to_torch, conv_weight_to_keras,
        )
    ]  # fmt: skip
    if use_bias:
        weights.append(_bias_row(filters))
    output = _map_output(call, spec, kernel, strides, padding, dilation, filters)
    return Converted(module, output, tuple(weights), activation=fused_activation(call))


def depthwise_kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """Depthwise kernel ``(kh, kw, in, mult)`` → grouped-conv weight ``(in * mult, 1, kh, kw)``.

    Keras's output channel ``c * mult + m`` is input channel ``c``'s ``m``-th filter,
    which is torch's order for ``groups=in``: (in, mult) flattens in C order.
    """
    kh, kw, c, m = k.shape
    return k.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]


def depthwise_weight_to_keras(w: np.ndarray, multiplier: int) -> np.ndarray:
    """The inverse of ``depthwise_kernel_to_torch`` (the multiplier is not in the shape)."""
    cm, _, kh, kw = w.shape
    return w[:, 0].transpose(1, 2, 0).reshape(kh, kw, cm // multiplier, multiplier)


def _depthwise_row(
    keras_name: str, torch_name: str, kernel: tuple[int, int], c: int, mult: int
) -> WeightMap:
    return WeightMap(
        keras_name, torch_name, (*kernel, c, mult), depthwise_kernel_to_torch,
        functools.partial(depthwise_weight_to_keras, multiplier=mult),
    )  # fmt: skip


@register_keras_layer("DepthwiseConv2D")
def depthwise_conv2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.DepthwiseConv2D`` → ``nn.Conv2d(in, in * mult, groups=in)``.

    Strides > 1 with dilation > 1 are allowed: Keras's TensorFlow backend runs them as a
    dilated stride-1 conv, subsampled, on TF-'same'-padded input, which is what torch's
    strided dilated conv computes.
    """
    spec, _, _, c = single_map(call, inputs)
    mult = _positive(call, "depth_multiplier", 1)
    kernel, strides, dilation, padding = _window(call)
    use_bias = _use_bias(call)
    module = create_conv2d(
        c, c * mult, kernel, strides, padding, dilation, use_bias, groups=c, **ctx.factory
    )
    weights = [_depthwise_row("kernel", "weight", kernel, c, mult)]
    if use_bias:
        weights.append(_bias_row(c * mult))
    output = _map_output(call, spec, kernel, strides, padding, dilation, c * mult)
    return Converted(module, output, tuple(weights), activation=fused_activation(call))


@register_keras_layer("SeparableConv2D")
def separable_conv2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.SeparableConv2D`` → ``SeparableConv2d`` (``depthwise``, ``pointwise``).

    Variables in Keras's order: depthwise_kernel ``(kh, kw, in, mult)``, pointwise_kernel
    ``(1, 1, in * mult, filters)``, bias ``(filters,)``.
    """
    spec, _, _, c = single_map(call, inputs)
    filters = _positive(call, "filters")
    mult = _positive(call, "depth_multiplier", 1)
    kernel, strides, dilation, padding = _window(call)
    use_bias = _use_bias(call)
    module = SeparableConv2d(
        c, filters, kernel, strides, padding, dilation, mult, use_bias, **ctx.factory
    )
    weights = [
        _depthwise_row("depthwise_kernel", "depthwise.weight", kernel, c, mult),
        WeightMap(
            "pointwise_kernel", "pointwise.weight", (1, 1, c * mult, filters),
            conv_kernel_to_torch, conv_weight_to_keras,
        ),
    ]  # fmt: skip
    if use_bias:
        weights.append(_bias_row(filters, "pointwise.bias"))
    output = _map_output(call, spec, kernel, strides, padding, dilation, filters)
    return Converted(module, output, tuple(weights), activation=fused_activation(call))


def conv_transpose_kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """Conv2DTranspose kernel ``(kh, kw, filters, in)`` → ``ConvTranspose2d`` weight ``(in, filters, kh, kw)``."""
    return k.transpose(3, 2, 0, 1)


def conv_transpose_weight_to_keras(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)


def _output_padding(call: KerasCall, strides: tuple[int, int]) -> tuple[int, int] | None:
    if call.config.get("output_padding") is None:
        return None
    value = pair(call, "output_padding", None)
    for op, s in zip(value, strides, strict=True):
        if not 0 <= op < s:
            raise call.error(
                "`output_padding` must be at least 0 and strictly less than `strides`. "
                f"Received: output_padding={list(value)}, strides={list(strides)}"
            )
    return value


@register_keras_layer("Conv2DTranspose")
def conv2d_transpose(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Conv2DTranspose`` → ``nn.ConvTranspose2d`` (TensorFlow's output size and
    placement; ``ConvTranspose2dSame`` where TF crops one pixel more at the end).
    """
    _, h, w, c = single_map(call, inputs)
    filters = _positive(call, "filters")
    kernel, strides, dilation, padding = _window(call)
    _refuse_stride_and_dilation(call, strides, dilation)
    output_padding = _output_padding(call, strides)
    ops: tuple[int | None, int | None] = output_padding or (None, None)
    for k, s, op, d in zip(kernel, strides, ops, dilation, strict=True):
        try:
            conv_transpose_padding(k, s, padding, op, d)
        except ValueError as exc:
            raise call.error(str(exc)) from None
    use_bias = _use_bias(call)
    module = create_conv_transpose2d(
        c, filters, kernel, strides, padding, output_padding, dilation, use_bias, **ctx.factory
    )
    weights = [
        WeightMap(
            "kernel", "weight", (*kernel, filters, c),
            conv_transpose_kernel_to_torch, conv_transpose_weight_to_keras,
        )
    ]  # fmt: skip
    if use_bias:
        weights.append(_bias_row(filters))
    out_h, out_w = (
        conv_transpose_output_size(n, k, s, padding, op, d)
        for n, k, s, op, d in zip((h, w), kernel, strides, ops, dilation, strict=True)
    )
    output = TensorSpec((out_h, out_w, filters))
    return Converted(module, output, tuple(weights), activation=fused_activation(call))
