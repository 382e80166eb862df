"""Converters: Keras's spatial and shape layers (ZeroPadding2D, Cropping2D, UpSampling2D,
Flatten, Reshape, Permute).

keras/src/layers/reshaping/. Maps are NCHW in torch and NHWC in Keras; Flatten,
Reshape and Permute act on Keras's element order, so their modules convert the
layout on the way in and out where the order matters (see ``torch_cnn.layers.spatial``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    channels_last,
    pair,
    register_keras_layer,
    single_input,
    single_map,
)
from torch_cnn.layers.spatial import Crop2d, FlattenChannelsLast, Permute, Reshape, UpSample2d
from torch_cnn.layers.spec import TensorSpec


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _edges(call: KerasCall, key: str, default: Any) -> tuple[int, int, int, int]:
    """An int, a pair, or ((top, bottom), (left, right)) as (top, bottom, left, right) ≥ 0."""
    value = call.config.get(key, default)
    edges: tuple[int, int, int, int] | None = None
    if _is_int(value):
        edges = (value, value, value, value)
    elif isinstance(value, list | tuple) and len(value) == 2:
        sides: list[tuple[int, int]] = []
        for v in value:
            if _is_int(v):
                sides.append((v, v))
            elif isinstance(v, list | tuple) and len(v) == 2 and all(map(_is_int, v)):
                sides.append((v[0], v[1]))
        if len(sides) == 2:
            edges = (*sides[0], *sides[1])
    if edges is None or min(edges) < 0:
        raise call.error(
            f"{key} must be a non-negative int, a pair of them, or ((top, bottom), "
            f"(left, right)). Received: {key}={value!r}"
        )
    return edges


@register_keras_layer("ZeroPadding2D")
def zero_padding2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.ZeroPadding2D`` → ``nn.ZeroPad2d((left, right, top, bottom))``."""
    _, h, w, c = single_map(call, inputs)
    top, bottom, left, right = _edges(call, "padding", 1)
    output = TensorSpec(
        (None if h is None else h + top + bottom, None if w is None else w + left + right, c)
    )
    return Converted(nn.ZeroPad2d((left, right, top, bottom)), output)


@register_keras_layer("Cropping2D")
def cropping2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Cropping2D`` → ``Crop2d`` (a view of the NCHW input)."""
    spec, h, w, c = single_map(call, inputs)
    top, bottom, left, right = _edges(call, "cropping", 0)
    if (h is not None and top + bottom >= h) or (w is not None and left + right >= w):
        raise call.error(
            "Values in `cropping` argument should be smaller than the corresponding spatial "
            f"dimension of the input. Received: input {spec.keras_str()}, "
            f"cropping=(({top}, {bottom}), ({left}, {right}))"
        )
    output = TensorSpec(
        (None if h is None else h - top - bottom, None if w is None else w - left - right, c)
    )
    return Converted(Crop2d(top, bottom, left, right), output)


@register_keras_layer("UpSampling2D")
def up_sampling2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.UpSampling2D`` → ``UpSample2d`` ('nearest' or TF's 'bilinear')."""
    _, h, w, c = single_map(call, inputs)
    size = pair(call, "size", 2)
    if min(size) < 1:
        raise call.error(f"size must be positive. Received: size={list(size)}")
    interpolation = call.config.get("interpolation", "nearest")
    mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
    if mode not in ("nearest", "bilinear"):
        raise call.error(
            "interpolation must be 'nearest' or 'bilinear' (torch_cnn converts these two). "
            f"Received: interpolation={interpolation!r}"
        )
    output = TensorSpec((None if h is None else h * size[0], None if w is None else w * size[1], c))
    return Converted(UpSample2d(size, mode), output)


@register_keras_layer("Flatten")
def flatten(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Flatten``: Keras's (H, W, C) order, or torch's (C, H, W) for a Dense.

    With ``ctx.flatten_order == "torch"`` a map flattens NCHW (``nn.Flatten``, no copy)
    and the output spec records ``chw`` so the Dense reading it permutes its kernel rows.
    """
    channels_last(call)
    spec = single_input(call, inputs)
    known = all(d is not None for d in spec.shape)
    size = math.prod(d for d in spec.shape if d is not None) if known else None
    output = TensorSpec((size,))
    if not spec.is_map:
        return Converted(nn.Flatten() if spec.shape else _FlattenScalar(), output)
    h, w, c = spec.shape
    if ctx.flatten_order == "torch":
        if h is None or w is None or c is None:
            raise call.error(
                f"cannot flatten an input of unknown size {spec.keras_str()} in torch's "
                "(C, H, W) order for a Dense layer; give the model a fixed input size"
            )
        return Converted(nn.Flatten(), TensorSpec((size,), chw=(c, h, w)))
    if h == w == 1 or c == 1:  # (H, W, C) and (C, H, W) orders coincide: no copy
        return Converted(nn.Flatten(), output)
    return Converted(FlattenChannelsLast(), output)


class _FlattenScalar(nn.Module):
    """Flatten of a (batch,) tensor: Keras returns (batch, 1)."""

    def forward(self, x: Any) -> Any:
        return x.reshape(x.shape[0], 1)


def _target_shape(call: KerasCall, spec: TensorSpec) -> tuple[tuple[int, ...], TensorSpec]:
    """``target_shape`` (with -1 as given) and the output spec as Keras's
    ``compute_reshape_output_shape`` resolves it."""
    value = call.config.get("target_shape")
    if not isinstance(value, list | tuple) or not all(map(_is_int, value)):
        raise call.error(f"target_shape must be a list of ints. Received: target_shape={value!r}")
    target = tuple(int(d) for d in value)
    if any(d < -1 for d in target) or target.count(-1) > 1:
        raise call.error(
            "Each dimension in `target_shape` must be a non-negative integer, or `-1` for a "
            f"single unknown dimension. Received: target_shape={list(target)}"
        )
    if any(d is None for d in spec.shape):
        return target, TensorSpec(tuple(None if d == -1 else d for d in target))
    size = math.prod(d for d in spec.shape if d is not None)
    known = math.prod(d for d in target if d != -1)
    if -1 not in target and known != size:
        raise call.error(
            "The total size of the tensor must be unchanged. Received: input "
            f"{spec.keras_str()}, target_shape={list(target)}"
        )
    if -1 in target:
        if known == 0 or size % known:
            raise call.error(
                f"target_shape={list(target)} does not divide the input {spec.keras_str()} "
                f"({size} elements)"
            )
        return target, TensorSpec(tuple(size // known if d == -1 else d for d in target))
    return target, TensorSpec(target)


@register_keras_layer("Reshape")
def reshape(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Reshape`` → ``Reshape``: reshaped in Keras's layout (NHWC for maps)."""
    spec = single_input(call, inputs)
    target, output = _target_shape(call, spec)
    return Converted(Reshape(target, in_map=spec.is_map, out_map=output.is_map), output)


@register_keras_layer("Permute")
def permute(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """``keras.layers.Permute`` → ``Permute``: Keras's ``dims`` with the NCHW conversions of
    a map input and a map output folded into one torch permutation."""
    spec = single_input(call, inputs)
    value = call.config.get("dims")
    rank = len(spec.shape)
    if (
        not isinstance(value, list | tuple)
        or not all(map(_is_int, value))
        or sorted(value) != list(range(1, rank + 1))
    ):
        raise call.error(
            f"dims must permute the axes 1..{rank} of the input {spec.keras_str()}. "
            f"Received: dims={value!r}"
        )
    keras_dims = (0, *(int(d) for d in value))  # output Keras axis j ← input Keras axis
    output = TensorSpec(tuple(spec.shape[d - 1] for d in keras_dims[1:]))
    # Output torch dim t holds output Keras axis a = keras_axis_of(t); that is input Keras
    # axis keras_dims[a], which sits at input torch dim spec.torch_axis(...).
    keras_axis_of = (0, 3, 1, 2) if output.is_map else tuple(range(rank + 1))
    dims = tuple(spec.torch_axis(keras_dims[keras_axis_of[t]]) for t in range(rank + 1))
    return Converted(Permute(dims), output)
