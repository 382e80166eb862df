"""Merge converters against Keras: Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate.

keras/src/layers/merging/. Multi-input layers go through ``convert_layer`` with a
list of inputs (the harness builds ``args=([TensorArg(0), TensorArg(1), ...],)``).
Bars: float32 ≤ 1e-5, float64 ≤ 1e-12.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from parity_tests.layer_harness import (
    BAR,
    DTYPES,
    TORCH_DTYPE,
    convert_layer,
    keras_call,
    max_abs,
    to_keras_layout,
    to_torch_layout,
)
from torch_cnn.convert.registry import BuildContext, ConversionError, TensorArg, get_converter
from torch_cnn.layers.merge import Concatenate, Merge
from torch_cnn.layers.spec import TensorSpec

pytestmark = pytest.mark.keras

MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _xs(shapes: list[tuple[int, ...]], dtype: str, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 1.0, (3, *s)).astype(dtype) for s in shapes]


def _layer(keras: ModuleType, name: str, dtype: str, **kw: Any) -> Any:
    return getattr(keras.layers, name)(dtype=dtype, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("name", "n"), [(m, n) for m in MERGES for n in (2, 3) if m != "Subtract" or n == 2]
)
@pytest.mark.parametrize("shape", [(4, 5, 6), (7,), (3, 5)], ids=["map", "vector", "rank2"])
def test_merge(keras: ModuleType, name: str, n: int, shape: tuple[int, ...], dtype: str) -> None:
    xs = _xs([shape] * n, dtype, 1)
    converted, k, t = convert_layer(keras, _layer(keras, name, dtype), xs, dtype=TORCH_DTYPE[dtype])
    assert isinstance(converted.module, Merge)
    delta = max_abs(k, t)
    assert delta <= BAR[dtype], f"{name} x{n} {shape} {dtype}: max|Δ| = {delta:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MERGES)
@pytest.mark.parametrize(
    "shapes",
    [
        [(4, 5, 6), (1, 1, 6)],  # per-channel
        [(4, 5, 6), (4, 1, 1)],  # per-row
        [(4, 5, 6), (6,)],  # a vector against a map: Keras expands after the batch axis
        [(6,), (4, 5, 6)],
        [(4, 5, 6), (5, 1)],
        [(3, 5), (5,)],
        [(2, 3, 4, 5), (3, 4, 1)],  # a map against rank 4
    ],
    ids=str,
)
def test_merge_broadcasting(
    keras: ModuleType, name: str, shapes: list[tuple[int, ...]], dtype: str
) -> None:
    xs = _xs(shapes, dtype, 2)
    converted, k, t = convert_layer(keras, _layer(keras, name, dtype), xs, dtype=TORCH_DTYPE[dtype])
    assert tuple(converted.output.shape) == tuple(k.shape[1:])
    assert max_abs(k, t) <= BAR[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shapes", "axis"),
    [
        ([(4, 5, 3), (4, 5, 6)], -1),
        ([(4, 5, 3), (4, 5, 6), (4, 5, 1)], 3),
        ([(2, 5, 3), (4, 5, 3)], 1),
        ([(4, 2, 3), (4, 5, 3)], 2),
        ([(4, 2, 3), (4, 5, 3)], -2),
        ([(7,), (3,)], -1),
        ([(3, 7), (3, 2)], -1),
        ([(3, 7), (1, 7)], 1),
    ],
    ids=str,
)
def test_concatenate(
    keras: ModuleType, shapes: list[tuple[int, ...]], axis: int, dtype: str
) -> None:
    xs = _xs(shapes, dtype, 3)
    layer = keras.layers.Concatenate(axis=axis, dtype=dtype)
    converted, k, t = convert_layer(keras, layer, xs, dtype=TORCH_DTYPE[dtype])
    assert isinstance(converted.module, Concatenate)
    assert max_abs(k, t) == 0.0  # a copy: exact


def test_concatenate_on_the_wrong_axis_is_caught(keras: ModuleType) -> None:
    """Keras's axis -1 on maps is torch dim 1; torch's last dim (the width) is wrong."""
    xs = _xs([(4, 3, 3), (4, 3, 3)], "float32", 4)
    converted, k, t = convert_layer(keras, keras.layers.Concatenate(), xs, dtype=torch.float32)
    assert converted.module.dim == 1
    assert max_abs(k, t) == 0.0
    out = converted.output  # Keras (4, 3, 6): torch (6, 4, 3)
    wrong = torch.cat([to_torch_layout(x, TensorSpec((4, 3, 3))) for x in xs], dim=-1)
    assert tuple(wrong.shape[1:]) != out.torch_shape  # the shape check catches it
    forced = wrong.reshape(-1, *out.torch_shape)  # and forced into shape, the values do
    assert max_abs(k, to_keras_layout(forced, out)) > 1e-2


def test_repeated_input_and_order(keras: ModuleType) -> None:
    """``Subtract()([b, a])`` and ``Add()([x, x])``: the list order, not the input order."""
    a, b = _xs([(4,), (4,)], "float64", 5)
    layer = keras.layers.Subtract(dtype="float64")
    ref = np.asarray(layer([b, a]))
    call = keras_call(keras, layer, 2)
    call = dataclasses.replace(call, args=([TensorArg(1), TensorArg(0)],))
    specs = [TensorSpec((4,)), TensorSpec((4,))]
    module = get_converter(call).build(call, specs, BuildContext()).module
    assert max_abs(ref, module(torch.from_numpy(a), torch.from_numpy(b)).numpy()) == 0.0
    add = keras.layers.Add(dtype="float64")
    ref = np.asarray(add([a, a]))
    call = dataclasses.replace(keras_call(keras, add, 2), args=([TensorArg(0), TensorArg(0)],))
    module = get_converter(call).build(call, specs[:1], BuildContext()).module
    assert max_abs(ref, module(torch.from_numpy(a)).numpy()) == 0.0


def test_merge_refusals(keras: ModuleType) -> None:
    call = keras_call(keras, keras.layers.Add(), 2)
    with pytest.raises(ConversionError, match="incompatible shapes"):
        get_converter(call).build(
            call, [TensorSpec((4, 5, 6)), TensorSpec((4, 5, 3))], BuildContext()
        )
    flat = TensorSpec((60,), chw=(3, 4, 5))
    with pytest.raises(ConversionError, match="torch-order Flatten"):
        get_converter(call).build(call, [flat, TensorSpec((60,))], BuildContext())
    call = keras_call(keras, keras.layers.Subtract(), 3)
    with pytest.raises(ConversionError, match="exactly 2"):
        get_converter(call).build(call, [TensorSpec((4,))] * 3, BuildContext())
    call = keras_call(keras, keras.layers.Concatenate(), 2)
    with pytest.raises(ConversionError, match="except along"):
        get_converter(call).build(
            call, [TensorSpec((4, 5, 6)), TensorSpec((4, 4, 6))], BuildContext()
        )
    with pytest.raises(ConversionError, match="same rank"):
        get_converter(call).build(call, [TensorSpec((4, 5, 6)), TensorSpec((6,))], BuildContext())
