"""Converters: Keras's 2D pooling (MaxPooling2D, AveragePooling2D and the global poolings).

keras/src/layers/pooling/: ``strides=None`` means the pool size; 'same' is
TensorFlow's (``tf.nn.max_pool`` pads with -inf, ``tf.nn.avg_pool`` averages the
cells inside the image only). Output shapes follow ``compute_pooling_output_shape``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from torch_cnn.convert.builtin.conv import conv_output_size, padding_mode
from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    pair,
    register_keras_layer,
    single_map,
)
from torch_cnn.layers.pooling import AvgPool2dSame, GlobalPool2d, MaxPool2d, MaxPool2dSame
from torch_cnn.layers.spec import TensorSpec


def _pool_output(
    call: KerasCall, spec: TensorSpec, pool: tuple[int, int], strides: tuple[int, int], padding: str
) -> TensorSpec:
    h, w, c = spec.shape
    # compute_pooling_output_shape: a conv's sizes at dilation 1
    out = [
        conv_output_size(n, k, s, padding, 1) for n, k, s in zip((h, w), pool, strides, strict=True)
    ]
    if any(o is not None and o < 1 for o in out):
        raise call.error(
            f"pool_size={list(pool)} with strides={list(strides)} and padding='valid' leaves "
            f"no output from an input of shape {spec.keras_str()}"
        )
    return TensorSpec((out[0], out[1], c))


def _pooling(
    call: KerasCall, inputs: Sequence[TensorSpec]
) -> tuple[tuple[int, int], tuple[int, int], str, TensorSpec]:
    """``(pool_size, strides, padding, output)`` of a MaxPooling2D or AveragePooling2D call."""
    spec, _, _, _ = single_map(call, inputs)
    pool = pair(call, "pool_size", 2)  # MaxPooling2D's default; AveragePooling2D requires it
    strides = pool if call.config.get("strides") is None else pair(call, "strides", None)
    if min(pool) < 1 or min(strides) < 1:
        raise call.error(
            "pool_size and strides must be positive. Received: "
            f"pool_size={list(pool)}, strides={list(strides)}"
        )
    padding = padding_mode(call)
    return pool, strides, padding, _pool_output(call, spec, pool, strides, padding)


@register_keras_layer("MaxPooling2D")
def max_pooling2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.MaxPooling2D`` → ``MaxPool2d`` ('valid') or ``MaxPool2dSame`` ('same')."""
    pool, strides, padding, output = _pooling(call, inputs)
    if padding == "same":
        return Converted(MaxPool2dSame(pool, strides), output)
    # An int kernel where square keeps MaxPool2d's fast path for non-overlapping windows.
    kernel = pool[0] if pool[0] == pool[1] else pool
    stride = strides[0] if strides[0] == strides[1] else strides
    return Converted(MaxPool2d(kernel, stride), output)


@register_keras_layer("AveragePooling2D")
def average_pooling2d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """``keras.layers.AveragePooling2D`` → ``nn.AvgPool2d`` ('valid') or ``AvgPool2dSame``."""
    pool, strides, padding, output = _pooling(call, inputs)
    if padding == "same":
        return Converted(AvgPool2dSame(pool, strides), output)
    return Converted(nn.AvgPool2d(pool, strides), output)


def _global_pool(call: KerasCall, inputs: Sequence[TensorSpec], pool_type: str) -> Converted:
    _, _, _, c = single_map(call, inputs)
    keepdims = call.config.get("keepdims", False)
    if not isinstance(keepdims, bool):
        raise call.error(f"keepdims must be true or false. Received: keepdims={keepdims!r}")
    output = TensorSpec((1, 1, c) if keepdims else (c,))
    return Converted(GlobalPool2d(pool_type, keepdims), output)


@register_keras_layer("GlobalAveragePooling2D")
def global_average_pooling2d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """``keras.layers.GlobalAveragePooling2D`` → ``GlobalPool2d('avg')``: (C,) or (1, 1, C)."""
    return _global_pool(call, inputs, "avg")


@register_keras_layer("GlobalMaxPooling2D")
def global_max_pooling2d(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """``keras.layers.GlobalMaxPooling2D`` → ``GlobalPool2d('max')``: (C,) or (1, 1, C)."""
    return _global_pool(call, inputs, "max")
