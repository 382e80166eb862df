"""Converted ZeroPadding2D, Cropping2D, UpSampling2D, Flatten, Reshape and Permute against Keras.

Maps are NCHW in torch and NHWC in Keras: Flatten, Reshape and Permute must act in
Keras's element order. Wrong variants (a Reshape done on the NCHW tensor, a torch-order
Flatten read as Keras's, torch's float64 bilinear resize) must fail the parity check.
"""

from __future__ import annotations

import itertools
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from keras_ref.weights import seeded_keras_weights
from parity_tests.layer_harness import (
    BAR,
    KERAS_DTYPE,
    WRONG,
    convert_layer,
    keras_call,
    max_abs,
    to_torch_layout,
)
from torch_cnn.convert.registry import BuildContext, ConversionError, get_converter
from torch_cnn.layers.spatial import (
    Crop2d,
    FlattenChannelsLast,
    Permute,
    Reshape,
    UpSample2d,
    tf_resize_bilinear,
)
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import load_layer_arrays

pytestmark = [pytest.mark.keras, pytest.mark.usefixtures("one_torch_thread")]

DTYPES = [torch.float64, torch.float32]


def _check(
    keras: ModuleType,
    layer: Any,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    flatten_order: str = "keras",
    seed: int = 0,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Convert ``layer``, run both on a random (2, *shape) input; assert the bar and shape."""
    x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(KERAS_DTYPE[dtype])
    converted, ref, got = convert_layer(keras, layer, [x], dtype=dtype, flatten_order=flatten_order)
    assert got.shape == ref.shape
    delta = max_abs(ref, got)
    assert delta <= BAR[dtype], (layer.get_config(), shape, dtype, delta)
    return converted, ref, x


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("padding", [1, (2, 0), ((0, 3), (1, 2)), ((2, 1), (0, 0))])
def test_zero_padding2d(keras: ModuleType, padding: Any, dtype: torch.dtype) -> None:
    layer = keras.layers.ZeroPadding2D(padding, dtype=KERAS_DTYPE[dtype])
    converted, _, _ = _check(keras, layer, (5, 6, 3), dtype)
    assert isinstance(converted.module, nn.ZeroPad2d)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("cropping", [1, (2, 0), ((0, 3), (1, 2)), ((2, 1), (0, 0)), 0])
def test_cropping2d(keras: ModuleType, cropping: Any, dtype: torch.dtype) -> None:
    layer = keras.layers.Cropping2D(cropping, dtype=KERAS_DTYPE[dtype])
    converted, _, _ = _check(keras, layer, (7, 6, 3), dtype)
    assert isinstance(converted.module, Crop2d)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_up_sampling2d(keras: ModuleType, interpolation: str, dtype: torch.dtype) -> None:
    for size in ((2, 2), (3, 2), (1, 4), (5, 3)):
        layer = keras.layers.UpSampling2D(
            size, interpolation=interpolation, dtype=KERAS_DTYPE[dtype]
        )
        for shape in ((5, 7, 3), (6, 6, 2), (1, 4, 3)):
            converted, _, _ = _check(keras, layer, shape, dtype, seed=size[0])
            assert isinstance(converted.module, UpSample2d)


def test_tf_bilinear_is_bit_exact_and_torch_float64_misses_the_bar(keras: ModuleType) -> None:
    """TensorFlow resizes in float32 even for a float64 layer: ``F.interpolate`` in float64
    is ~1e-7 away; ``tf_resize_bilinear`` (TF's arithmetic in TF's order) matches exactly.
    In float32, ``F.interpolate`` (the fast path) is within a few ulps."""
    for dtype in DTYPES:
        layer = keras.layers.UpSampling2D(
            (3, 2), interpolation="bilinear", dtype=KERAS_DTYPE[dtype]
        )
        _, ref, x = _check(keras, layer, (6, 5, 3), dtype)
        t = to_torch_layout(x, TensorSpec((6, 5, 3)))
        exact = tf_resize_bilinear(t, (3, 2)).permute(0, 2, 3, 1).numpy()
        assert max_abs(ref, exact) == 0.0
        torch_resize = F.interpolate(t, scale_factor=(3, 2), mode="bilinear", align_corners=False)
        delta = max_abs(ref, torch_resize.permute(0, 2, 3, 1).numpy())
        if dtype == torch.float64:
            assert delta > 1e-9  # the bar is 1e-12: the module must not use F.interpolate here
        else:
            assert delta <= 1e-6


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_flatten_keras_order(keras: ModuleType, dtype: torch.dtype) -> None:
    layer = keras.layers.Flatten(dtype=KERAS_DTYPE[dtype])
    converted, _, _ = _check(keras, layer, (4, 3, 5), dtype)
    assert isinstance(converted.module, FlattenChannelsLast) and converted.output.chw is None
    for shape in ((1, 1, 5), (4, 3, 1)):  # the orders coincide: a plain (viewing) nn.Flatten
        converted, _, _ = _check(keras, layer, shape, dtype)
        assert type(converted.module) is nn.Flatten
    for shape in ((6,), (3, 4), (2, 3, 4, 5)):  # non-maps travel in Keras's order already
        converted, _, _ = _check(keras, layer, shape, dtype)
        assert type(converted.module) is nn.Flatten


def test_flatten_torch_order_records_chw(keras: ModuleType) -> None:
    """flatten_order='torch': nn.Flatten over NCHW, chw recorded; read as Keras's order it is wrong."""
    layer = keras.layers.Flatten(dtype="float64")
    converted, ref, x = _check(keras, layer, (4, 3, 5), torch.float64, flatten_order="torch")
    assert type(converted.module) is nn.Flatten
    assert converted.output == TensorSpec((60,), chw=(5, 4, 3))
    raw = converted.module(to_torch_layout(x, TensorSpec((4, 3, 5)))).numpy()
    assert max_abs(ref, raw) > WRONG  # the Dense must fold the permutation in


def _reshape_cases() -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    return [
        ((4, 6, 3), (8, 9, 1)),  # map → map
        ((4, 6, 3), (-1, 3)),  # map → rank 2
        ((4, 6, 3), (72,)),  # map → vector
        ((4, 6, 3), (2, -1, 6)),  # map → map with -1
        ((24,), (2, 4, 3)),  # vector → map
        ((6, 4), (3, 2, 4)),  # rank 2 → map
        ((6, 4), (4, 6)),  # rank 2 → rank 2
        ((2, 3, 4, 5), (-1, 5, 4)),  # rank 4 → map
    ]


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize(("shape", "target"), _reshape_cases())
def test_reshape(
    keras: ModuleType, shape: tuple[int, ...], target: tuple[int, ...], dtype: torch.dtype
) -> None:
    layer = keras.layers.Reshape(target, dtype=KERAS_DTYPE[dtype])
    converted, _, _ = _check(keras, layer, shape, dtype)
    assert isinstance(converted.module, Reshape)
    assert -1 not in converted.output.shape


def test_reshape_in_nchw_order_is_caught(keras: ModuleType) -> None:
    layer = keras.layers.Reshape((8, 9, 1), dtype="float64")
    _, ref, x = _check(keras, layer, (4, 6, 3), torch.float64)
    t = to_torch_layout(x, TensorSpec((4, 6, 3)))
    wrong = t.reshape(2, 8, 9, 1).numpy()  # NCHW elements read as Keras's
    assert max_abs(ref, wrong) > WRONG


def test_reshape_with_unknown_sizes(keras: ModuleType) -> None:
    """(None, 6, 3) → (-1, 3): Keras's spec has None; the module resolves -1 per call."""
    layer = keras.layers.Reshape((-1, 3), dtype="float64")
    call = keras_call(keras, layer)
    converted = get_converter(call).build(
        call, [TensorSpec((None, 6, 3))], BuildContext(dtype=torch.float64)
    )
    assert converted.output == TensorSpec((None, 3))
    for h in (2, 5):
        x = np.random.default_rng(h).standard_normal((2, h, 6, 3))
        y = converted.module(to_torch_layout(x, TensorSpec((h, 6, 3)))).numpy()
        assert max_abs(np.asarray(layer(x)), y) == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_permute(keras: ModuleType, dtype: torch.dtype) -> None:
    for dims in itertools.permutations((1, 2, 3)):
        layer = keras.layers.Permute(dims, dtype=KERAS_DTYPE[dtype])
        converted, _, _ = _check(keras, layer, (4, 5, 3), dtype)
        assert isinstance(converted.module, Permute)
    for shape in ((4, 5), (2, 3, 4, 5)):
        for dims in itertools.permutations(range(1, len(shape) + 1)):
            layer = keras.layers.Permute(dims, dtype=KERAS_DTYPE[dtype])
            _check(keras, layer, shape, dtype)


@pytest.mark.parametrize(
    ("cls", "args", "config", "message"),
    [
        ("ZeroPadding2D", (), {"data_format": "channels_first"}, "channels_first"),
        ("ZeroPadding2D", (), {"padding": [[1, -1], [0, 0]]}, "non-negative"),
        ("Cropping2D", (), {"cropping": [[4, 5], [0, 0]]}, "smaller than"),
        ("UpSampling2D", (), {"interpolation": "bicubic"}, "interpolation='bicubic'"),
        ("Flatten", (), {"data_format": "channels_first"}, "channels_first"),
        ("Reshape", ((5, 5),), {}, "total size"),
        ("Reshape", ((-1, 81),), {"target_shape": [-1, -1]}, "single unknown"),
        ("Reshape", ((4, -1),), {"target_shape": [4, -1]}, "does not divide"),
        ("Permute", ((2, 1, 3),), {"dims": [1, 2]}, "dims must permute"),
    ],
)
def test_refusals(
    keras: ModuleType, cls: str, args: tuple[Any, ...], config: dict[str, Any], message: str
) -> None:
    call = keras_call(keras, getattr(keras.layers, cls)(*args))
    call = type(call)(call.name, call.class_name, {**call.config, **config}, call.module, call.args)
    with pytest.raises(ConversionError, match=message) as info:
        get_converter(call).build(call, [TensorSpec((9, 9, 3))], BuildContext())
    assert call.label in str(info.value)


def test_flatten_torch_order_needs_known_sizes(keras: ModuleType) -> None:
    call = keras_call(keras, keras.layers.Flatten())
    with pytest.raises(ConversionError, match="unknown size"):
        get_converter(call).build(
            call, [TensorSpec((None, 4, 3))], BuildContext(flatten_order="torch")
        )
    keras_order = get_converter(call).build(call, [TensorSpec((None, 4, 3))], BuildContext())
    assert keras_order.output == TensorSpec((None,))


def test_a_chain_of_converted_layers_matches_a_keras_model(
    keras: ModuleType, keras_ref: ModuleType
) -> None:
    """Modules converted one by one, run in sequence on torch-layout tensors: the layouts
    compose (NCHW maps in, Keras's element order where Flatten/Reshape/Permute need it)."""
    with keras_ref.dtype_scope("float64"):
        layers = [
            keras.layers.ZeroPadding2D(((1, 0), (2, 1))),
            keras.layers.Conv2D(6, 3, strides=2, padding="same"),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
            keras.layers.MaxPooling2D(2, padding="same"),
            keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
            keras.layers.UpSampling2D((2, 1), interpolation="bilinear"),
            keras.layers.Cropping2D(((1, 0), (0, 2))),
            keras.layers.AveragePooling2D(3, strides=2, padding="same"),
            keras.layers.Permute((2, 1, 3)),
            keras.layers.Reshape((-1, 4)),
            keras.layers.Reshape((3, -1, 2)),
            keras.layers.Flatten(),
        ]
        model = keras.Sequential([keras.Input((15, 13, 3), dtype="float64"), *layers])
    seeded_keras_weights(model, 7)
    x = np.random.default_rng(7).standard_normal((2, 15, 13, 3))
    ref = np.asarray(model(x))
    spec = TensorSpec((15, 13, 3))
    t = to_torch_layout(x, spec)
    for layer in layers:
        call = keras_call(keras, layer)
        converted = get_converter(call).build(call, [spec], BuildContext(dtype=torch.float64))
        assert converted.output.shape == tuple(layer.output.shape[1:]), layer.name
        load_layer_arrays(converted.module, converted.weights, layer.get_weights(), layer.name)
        with torch.no_grad():
            t = converted.module(t)
        spec = converted.output
    assert t.shape == ref.shape and max_abs(ref, t.numpy()) <= 1e-12
