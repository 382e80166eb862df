"""Converted MaxPooling2D, AveragePooling2D and the global poolings against live Keras layers.

TensorFlow's 'same' pooling puts the odd padding pixel after and never lets a padded
cell count: max pooling pads with -inf, average pooling divides by the cells inside
the image. Wrong variants (zero padding for max, counting the padding for average,
torch's symmetric padding) must fail the parity check.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from parity_tests.layer_harness import (
    BAR,
    KERAS_DTYPE,
    WRONG,
    convert_layer,
    grid,
    keras_call,
    max_abs,
)
from torch_cnn.convert.registry import BuildContext, ConversionError, get_converter
from torch_cnn.layers.pooling import AvgPool2dSame, GlobalPool2d, MaxPool2d, MaxPool2dSame
from torch_cnn.layers.spec import TensorSpec

pytestmark = [pytest.mark.keras, pytest.mark.usefixtures("one_torch_thread")]

SIZES = ((13, 14), (16, 15))  # odd and even on both axes; remainders 0, 1, 2 modulo 3


def _parity(keras: ModuleType, layer: Any, x: np.ndarray, dtype: torch.dtype) -> tuple[Any, ...]:
    converted, ref, got = convert_layer(keras, layer, [x], dtype=dtype)
    assert got.shape == ref.shape
    return converted, ref, got, max_abs(ref, got)


POOL_GRID = [((k, k), s) for k in range(1, 6) for s in (None, 1, 2, 3)] + [
    ((2, 3), (1, 2)),
    ((3, 1), (2, 3)),
    ((4, 2), None),
]
FAST_POOLS = [((2, 2), None), ((3, 3), 2), ((2, 2), 1), ((4, 4), 3), ((2, 3), (1, 2)), ((5, 5), 2)]


@pytest.mark.parametrize("kind", ["MaxPooling2D", "AveragePooling2D"])
@pytest.mark.parametrize(("pool", "strides"), grid(POOL_GRID, FAST_POOLS))
def test_pooling_matches_keras(
    keras: ModuleType, kind: str, pool: tuple[int, int], strides: Any
) -> None:
    rng = np.random.default_rng(0)
    for padding in ("valid", "same"):
        for dtype in (torch.float64, torch.float32):
            layer = getattr(keras.layers, kind)(
                pool, strides=strides, padding=padding, dtype=KERAS_DTYPE[dtype]
            )
            for h, w in SIZES:
                x = rng.standard_normal((2, h, w, 3)).astype(KERAS_DTYPE[dtype])
                converted, _, _, delta = _parity(keras, layer, x, dtype)
                assert delta <= BAR[dtype], (padding, dtype, (h, w), delta)
                expected = nn.MaxPool2d if kind == "MaxPooling2D" else nn.AvgPool2d
                assert isinstance(converted.module, expected)
                assert converted.weights == () and converted.activation == "linear"


def test_modules_by_padding(keras: ModuleType) -> None:
    """'valid' max pooling keeps the fast MaxPool2d (int kernel); 'same' gets the Same modules."""

    def build(layer: Any) -> nn.Module:
        call = keras_call(keras, layer)
        return get_converter(call).build(call, [TensorSpec((8, 8, 3))], BuildContext()).module

    plain = build(keras.layers.MaxPooling2D(2))
    assert type(plain) is MaxPool2d and plain.kernel_size == 2 and plain.stride == 2
    assert type(build(keras.layers.MaxPooling2D(2, padding="same"))) is MaxPool2dSame
    assert type(build(keras.layers.AveragePooling2D(3, 2, padding="same"))) is AvgPool2dSame
    assert type(build(keras.layers.AveragePooling2D(3, 2))) is nn.AvgPool2d


def test_same_max_pool_fast_paths_bit_for_bit() -> None:
    """MaxPool2dSame's inference paths (the strided maximum, on -inf-padded input where TF
    pads) give the values of its training path (F.max_pool2d in ceil mode), bit for bit."""
    g = torch.Generator().manual_seed(0)
    for k in (2, 3):
        for h, w in ((16, 12), (15, 13), (13, 14), (1, 5)):
            x = torch.randn(4, 3, h, w, generator=g)
            pool = MaxPool2dSame(k)
            with torch.no_grad():
                fast = pool(x)
            slow = pool(x.requires_grad_())  # autograd: torch's max_pool2d
            assert torch.equal(fast, slow.detach()), (k, h, w)
            if h % k == 0 and w % k == 0:
                assert torch.equal(fast, F.max_pool2d(x.detach(), k))


def test_average_pooling_that_counts_padding_is_caught(keras: ModuleType) -> None:
    """TF's 'same' average excludes padded cells; torch's count_include_pad=True does not."""
    layer = keras.layers.AveragePooling2D(3, strides=1, padding="same", dtype="float64")
    x = np.random.default_rng(1).standard_normal((2, 9, 8, 3))
    _, ref, _, delta = _parity(keras, layer, x, torch.float64)
    assert delta <= 1e-12
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        wrong = F.avg_pool2d(t, 3, 1, 1, count_include_pad=True).permute(0, 2, 3, 1).numpy()
    assert wrong.shape == ref.shape and max_abs(ref, wrong) > WRONG


def test_asymmetric_average_padding_with_symmetric_torch_padding_is_caught(
    keras: ModuleType,
) -> None:
    """A 2×2 stride-1 'same' average pads (0, 1): torch's padding=1 (then cropped) is wrong."""
    layer = keras.layers.AveragePooling2D(2, strides=1, padding="same", dtype="float64")
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 3))
    _, ref, _, delta = _parity(keras, layer, x, torch.float64)
    assert delta <= 1e-12
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        wrong = F.avg_pool2d(t, 2, 1, 1, count_include_pad=False)[..., :7, :6]
    assert max_abs(ref, wrong.permute(0, 2, 3, 1).numpy()) > WRONG


def test_max_pooling_padded_with_zeros_is_caught(keras: ModuleType) -> None:
    """TF pads max pooling with -inf: on negative inputs zero padding would win."""
    layer = keras.layers.MaxPooling2D(2, padding="same", dtype="float64")
    x = -np.abs(np.random.default_rng(3).standard_normal((2, 7, 7, 3))) - 0.5
    _, ref, _, delta = _parity(keras, layer, x, torch.float64)
    assert delta <= 1e-12
    with torch.no_grad():
        t = F.pad(torch.from_numpy(x).permute(0, 3, 1, 2), (0, 1, 0, 1))
        wrong = F.max_pool2d(t, 2).permute(0, 2, 3, 1).numpy()
    assert wrong.shape == ref.shape and max_abs(ref, wrong) > WRONG


def test_same_pooling_with_unknown_sizes(keras: ModuleType) -> None:
    """(None, None, C): the spec keeps None; the padding is worked out per call."""
    for kind in ("MaxPooling2D", "AveragePooling2D"):
        layer = getattr(keras.layers, kind)(3, strides=2, padding="same", dtype="float64")
        call = keras_call(keras, layer)
        converted = get_converter(call).build(
            call, [TensorSpec((None, None, 3))], BuildContext(dtype=torch.float64)
        )
        assert converted.output == TensorSpec((None, None, 3))
        for h, w in ((7, 8), (10, 5), (1, 2)):
            x = np.random.default_rng(h).standard_normal((2, h, w, 3))
            y = converted.module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            assert max_abs(np.asarray(layer(x)), y.numpy()) <= 1e-12


def test_same_pooling_gradients_are_torch_pooling_gradients() -> None:
    """The 'same' modules are torch's pooling ops (with autograd), not a copy of them."""
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    for module in (MaxPool2dSame(2), AvgPool2dSame(3, 2), MaxPool2dSame(2, 1), AvgPool2dSame(2, 1)):
        assert torch.autograd.gradcheck(module, (x,))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("kind", ["GlobalAveragePooling2D", "GlobalMaxPooling2D"])
def test_global_pooling_matches_keras(keras: ModuleType, kind: str, keepdims: bool) -> None:
    for dtype in (torch.float64, torch.float32):
        layer = getattr(keras.layers, kind)(keepdims=keepdims, dtype=KERAS_DTYPE[dtype])
        for h, w in ((7, 8), (1, 1), (32, 32)):
            x = np.random.default_rng(h).standard_normal((3, h, w, 5)).astype(KERAS_DTYPE[dtype])
            converted, _, _, delta = _parity(keras, layer, x, dtype)
            assert delta <= BAR[dtype], (dtype, (h, w), delta)
            assert converted.output == TensorSpec((1, 1, 5) if keepdims else (5,))
            assert isinstance(converted.module, GlobalPool2d)


@pytest.mark.parametrize(
    ("cls", "config", "message"),
    [
        ("MaxPooling2D", {"data_format": "channels_first"}, "channels_first"),
        ("MaxPooling2D", {"padding": "full"}, "Received: padding='full'"),
        ("AveragePooling2D", {"strides": [0, 1]}, "must be positive"),
        ("MaxPooling2D", {"pool_size": [11, 2]}, "leaves no output"),
        ("GlobalAveragePooling2D", {"data_format": "channels_first"}, "channels_first"),
    ],
)
def test_refusals(keras: ModuleType, cls: str, config: dict[str, Any], message: str) -> None:
    layer = (
        getattr(keras.layers, cls)() if cls.startswith("Global") else getattr(keras.layers, cls)(2)
    )
    call = keras_call(keras, layer)
    call = type(call)(call.name, call.class_name, {**call.config, **config}, call.module, call.args)
    with pytest.raises(ConversionError, match=message) as info:
        get_converter(call).build(call, [TensorSpec((9, 9, 3))], BuildContext())
    assert call.label in str(info.value)
