"""Converted Conv2D, DepthwiseConv2D, SeparableConv2D and Conv2DTranspose against live Keras layers.

Each case converts the layer as a file would store it (parity_tests/layer_harness.py),
copies its seeded weights through the WeightMaps and compares outputs in Keras's
layout: float64 max |Δ| ≤ 1e-12, float32 ≤ 1e-5, output shapes equal to Keras's.
Wrong variants (symmetric 'same' padding, a depthwise kernel flattened (mult, in),
torch's symmetric transposed-conv padding) must fail the same check.
"""

from __future__ import annotations

import functools
import re
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
    grid,
    keras_call,
    max_abs,
)
from torch_cnn.convert.registry import BuildContext, ConversionError, get_converter
from torch_cnn.layers.conv import ConvTranspose2dSame, SeparableConv2d
from torch_cnn.layers.padding import Conv2dSame
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import load_layer_arrays

pytestmark = [pytest.mark.keras, pytest.mark.usefixtures("one_torch_thread")]

# (H, W) pairs: odd and even sizes on both axes, remainders 0, 1, 2 modulo 3.
SIZES = ((13, 14), (16, 15))


def _parity(
    keras: ModuleType, make: Any, sizes: Any, cin: int, dtype: torch.dtype, seed: int = 0
) -> tuple[float, list[Any]]:
    """Build ``make(dtype=...)``, seed its weights, compare on each size; max |Δ| and results."""
    layer = make(dtype=KERAS_DTYPE[dtype])
    layer.build((None, None, None, cin))
    seeded_keras_weights(layer, seed)
    rng = np.random.default_rng(seed)
    worst, results = 0.0, []
    for h, w in sizes:
        x = rng.standard_normal((2, h, w, cin)).astype(KERAS_DTYPE[dtype])
        converted, ref, got = convert_layer(keras, layer, [x], dtype=dtype)
        assert got.shape == ref.shape
        worst = max(worst, max_abs(ref, got))
        results.append((converted, ref, got, x))
    return worst, results


# ---------------------------------------------------------------- Conv2D

CONV_GRID = (
    [((k, k), (s, s), (1, 1)) for k in range(1, 6) for s in (1, 2, 3)]
    + [((k, k), (1, 1), (d, d)) for k in range(2, 6) for d in (2, 3)]
    + [((2, 3), (1, 2), (1, 1)), ((3, 1), (2, 3), (1, 1)), ((4, 2), (1, 1), (1, 3))]
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(
    ("kernel", "strides", "dilation"),
    grid(
        CONV_GRID,
        [((3, 3), (2, 2), (1, 1)), ((4, 4), (2, 2), (1, 1)), ((2, 2), (1, 1), (1, 1)),
         ((5, 5), (3, 3), (1, 1)), ((3, 3), (1, 1), (2, 2)), ((2, 3), (1, 2), (1, 1))],
    ),
)  # fmt: skip
def test_conv2d_matches_keras(
    keras: ModuleType,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilation: tuple[int, int],
    dtype: torch.dtype,
) -> None:
    for padding in ("valid", "same"):
        make = functools.partial(
            keras.layers.Conv2D, 4, kernel, strides=strides, padding=padding, dilation_rate=dilation
        )
        worst, results = _parity(keras, make, SIZES, 3, dtype)
        assert worst <= BAR[dtype], (padding, worst)
        for converted, *_ in results:
            assert isinstance(converted.module, nn.Conv2d)
            assert converted.module.weight.dtype == dtype
            assert converted.activation == "linear"


@pytest.mark.parametrize(
    ("groups", "filters", "kernel", "strides", "padding"),
    [(2, 4, 3, 1, "same"), (3, 6, 2, 2, "same"), (6, 12, 3, 2, "valid"), (2, 2, 4, 3, "same")],
)
def test_grouped_conv2d_matches_keras(
    keras: ModuleType, groups: int, filters: int, kernel: int, strides: int, padding: str
) -> None:
    def make(**kw: Any) -> Any:
        return keras.layers.Conv2D(
            filters, kernel, strides=strides, padding=padding, groups=groups, **kw
        )

    worst, results = _parity(keras, make, SIZES[:1], 6, torch.float64)
    assert worst <= BAR[torch.float64]
    conv = results[0][0].module
    assert conv.groups == groups and conv.weight.shape == (filters, 6 // groups, kernel, kernel)
    assert results[0][0].weights[0].shape == (kernel, kernel, 6 // groups, filters)


def test_conv2d_without_bias_and_weight_rows(keras: ModuleType) -> None:
    def make(**kw: Any) -> Any:
        return keras.layers.Conv2D(5, (3, 2), use_bias=False, padding="same", **kw)

    worst, results = _parity(keras, make, SIZES[:1], 3, torch.float64)
    assert worst <= BAR[torch.float64]
    converted = results[0][0]
    assert converted.module.bias is None
    assert [(m.keras_name, m.torch_name, m.shape) for m in converted.weights] == [
        ("kernel", "weight", (3, 2, 3, 5))
    ]
    kernel = np.random.default_rng(1).standard_normal((3, 2, 3, 5))
    row = converted.weights[0]
    assert np.array_equal(row.to_keras(row.to_torch(kernel)), kernel)


def test_conv2d_fused_relu(keras: ModuleType) -> None:
    """The converter names the activation; the graph applies it (here: a local relu)."""
    layer = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", dtype="float64")
    layer.build((None, None, None, 3))
    seeded_keras_weights(layer, 3)
    x = np.random.default_rng(3).standard_normal((2, 10, 9, 3))
    ref = np.asarray(layer(x))
    call = keras_call(keras, layer)
    converted = get_converter(call).build(
        call, [TensorSpec((10, 9, 3))], BuildContext(dtype=torch.float64)
    )
    assert converted.activation == "relu"
    load_layer_arrays(converted.module, converted.weights, layer.get_weights())
    local = {"relu": torch.relu, "linear": lambda t: t}[converted.activation]
    with torch.no_grad():
        y = local(converted.module(torch.from_numpy(x).permute(0, 3, 1, 2)))
    assert (ref == 0).mean() > 0.2  # relu did cut something
    assert max_abs(ref, y.permute(0, 2, 3, 1).numpy()) <= 1e-12


def test_symmetric_same_padding_is_caught(keras: ModuleType) -> None:
    """torch's padding=1 on a 3×3 stride-2 conv: the right shape, the wrong values."""

    def make(**kw: Any) -> Any:
        return keras.layers.Conv2D(4, 3, strides=2, padding="same", **kw)

    worst, results = _parity(keras, make, [(16, 16)], 3, torch.float64)
    converted, ref, _, x = results[0]
    assert worst <= 1e-12 and isinstance(converted.module, Conv2dSame)
    wrong = nn.Conv2d(3, 4, 3, 2, padding=1, dtype=torch.float64)
    wrong.load_state_dict(converted.module.state_dict())
    with torch.no_grad():
        y = wrong(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert y.shape == ref.shape and max_abs(ref, y) > WRONG


def test_conv2d_unknown_sizes(keras: ModuleType) -> None:
    """A (None, None, C) input: the spec keeps None, the module pads per call as Keras does."""
    layer = keras.layers.Conv2D(4, 4, strides=3, padding="same", dtype="float64")
    layer.build((None, None, None, 3))
    seeded_keras_weights(layer, 5)
    call = keras_call(keras, layer)
    converted = get_converter(call).build(
        call, [TensorSpec((None, 12, 3))], BuildContext(dtype=torch.float64)
    )
    assert converted.output == TensorSpec((None, 4, 4))
    load_layer_arrays(converted.module, converted.weights, layer.get_weights())
    for h in (7, 8, 9):
        x = np.random.default_rng(h).standard_normal((1, h, 12, 3))
        with torch.no_grad():
            y = converted.module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        assert max_abs(np.asarray(layer(x)), y.numpy()) <= 1e-12


# ---------------------------------------------------------------- DepthwiseConv2D

DEPTHWISE_GRID = [
    (k, s, d, m)
    for k in (1, 2, 3, 5)
    for s, d in ((1, 1), (2, 1), (3, 1), (1, 2), (2, 2))
    for m in (1, 3)
]


@pytest.mark.parametrize(
    ("k", "s", "d", "mult"),
    grid(DEPTHWISE_GRID, [(3, 2, 1, 3), (2, 2, 2, 3), (5, 1, 2, 1), (2, 3, 1, 1)]),
)
def test_depthwise_conv2d_matches_keras(
    keras: ModuleType, k: int, s: int, d: int, mult: int
) -> None:
    for padding in ("valid", "same"):
        for dtype in (torch.float64, torch.float32):
            make = functools.partial(
                keras.layers.DepthwiseConv2D, k, strides=s, padding=padding,
                depth_multiplier=mult, dilation_rate=d,
            )  # fmt: skip
            worst, results = _parity(keras, make, SIZES, 3, dtype)
            assert worst <= BAR[dtype], (padding, dtype, worst)
    conv = results[0][0].module
    assert isinstance(conv, nn.Conv2d) and conv.groups == 3
    assert conv.weight.shape == (3 * mult, 1, k, k)


def test_depthwise_kernel_order_is_caught(keras: ModuleType) -> None:
    """Keras's output channel c * mult + m; flattening (in, mult) as (mult, in) is caught."""

    def make(**kw: Any) -> Any:
        return keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", **kw)

    worst, results = _parity(keras, make, [(9, 8)], 3, torch.float64)
    converted, ref, _, x = results[0]
    assert worst <= 1e-12
    kernel = converted.module.weight.detach().numpy()  # (in * mult, 1, kh, kw)
    row = converted.weights[0]
    keras_kernel = row.to_keras(kernel)
    assert keras_kernel.shape == (3, 3, 3, 2)
    assert np.array_equal(row.to_torch(keras_kernel), kernel)
    wrong = keras_kernel.transpose(0, 1, 3, 2).reshape(3, 3, 6).transpose(2, 0, 1)[:, None]
    with torch.no_grad():
        converted.module.weight.copy_(torch.from_numpy(np.ascontiguousarray(wrong)))
        y = converted.module(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    assert max_abs(ref, y.numpy()) > WRONG


# ---------------------------------------------------------------- SeparableConv2D


@pytest.mark.parametrize(
    ("k", "s", "d", "mult", "use_bias"),
    [(3, 1, 1, 1, True), (3, 2, 1, 2, True), (2, 1, 2, 1, False), (5, 3, 1, 3, True),
     (4, 2, 2, 2, True), (1, 2, 1, 2, True)],
)  # fmt: skip
def test_separable_conv2d_matches_keras(
    keras: ModuleType, k: int, s: int, d: int, mult: int, use_bias: bool
) -> None:
    for padding in ("valid", "same"):
        for dtype in (torch.float64, torch.float32):
            make = functools.partial(
                keras.layers.SeparableConv2D, 5, k, strides=s, padding=padding, dilation_rate=d,
                depth_multiplier=mult, use_bias=use_bias,
            )  # fmt: skip
            worst, results = _parity(keras, make, SIZES, 3, dtype)
            assert worst <= BAR[dtype], (padding, dtype, worst)
    converted = results[0][0]
    module = converted.module
    assert isinstance(module, SeparableConv2d)
    assert isinstance(module.depthwise, nn.Conv2d) and isinstance(module.pointwise, nn.Conv2d)
    expected = [
        ("depthwise_kernel", "depthwise.weight", (k, k, 3, mult)),
        ("pointwise_kernel", "pointwise.weight", (1, 1, 3 * mult, 5)),
    ] + ([("bias", "pointwise.bias", (5,))] if use_bias else [])
    assert [(m.keras_name, m.torch_name, m.shape) for m in converted.weights] == expected
    assert sorted(module.state_dict()) == sorted(m.torch_name for m in converted.weights)


# ---------------------------------------------------------------- Conv2DTranspose


def _transpose_cases(kernels: Any, strides: Any) -> list[tuple[int, int, int, int | None]]:
    cases: list[tuple[int, int, int, int | None]] = []
    for k in kernels:
        for s in strides:
            cases += [(k, s, 1, op) for op in (None, *range(s))]
        cases += [(k, 1, 2, None), (k, 1, 2, 0)]
    return cases


def _tf_runs(k: int, d: int, padding: str, op: int | None) -> bool:
    """TensorFlow refuses 'same' with an even effective kernel and output_padding=0."""
    return not (padding == "same" and op == 0 and ((k - 1) * d + 1) % 2 == 0)


@pytest.mark.parametrize(
    ("k", "s", "d", "op"),
    grid(
        _transpose_cases(range(1, 6), (1, 2, 3)),
        [(3, 2, 1, None), (3, 2, 1, 1), (4, 2, 1, None), (4, 2, 1, 1), (2, 3, 1, None),
         (2, 3, 1, 2), (5, 3, 1, 0), (3, 1, 2, None), (4, 1, 1, None)],
    ),
)  # fmt: skip
def test_conv2d_transpose_matches_keras(
    keras: ModuleType, k: int, s: int, d: int, op: int | None
) -> None:
    for padding in ("valid", "same"):
        if not _tf_runs(k, d, padding, op):
            continue
        # TensorFlow's float64 Conv2DBackpropInput refuses dilation on the CPU (oneDNN's
        # float32 kernel runs it).
        for dtype in (torch.float64, torch.float32) if d == 1 else (torch.float32,):
            make = functools.partial(
                keras.layers.Conv2DTranspose, 4, k, strides=s, padding=padding,
                output_padding=op, dilation_rate=d,
            )  # fmt: skip
            worst, results = _parity(keras, make, ((5, 6), (8, 7)), 3, dtype)
            assert worst <= BAR[dtype], (padding, dtype, worst)
            for converted, *_ in results:
                assert isinstance(converted.module, nn.ConvTranspose2d)


@pytest.mark.parametrize(
    ("kernel", "strides", "op"),
    [((2, 3), (2, 1), (1, 0)), ((2, 3), (2, 1), None), ((3, 4), (3, 2), None),
     ((3, 4), (3, 2), (2, 1)), ((5, 2), (1, 3), (0, 2))],
)  # fmt: skip
def test_conv2d_transpose_rectangular(
    keras: ModuleType, kernel: tuple[int, int], strides: tuple[int, int], op: Any
) -> None:
    for padding in ("valid", "same"):
        ops = op or (None, None)
        if not all(_tf_runs(k, 1, padding, o) for k, o in zip(kernel, ops, strict=True)):
            continue
        for dtype in (torch.float64, torch.float32):
            make = functools.partial(
                keras.layers.Conv2DTranspose, 4, kernel, strides=strides, padding=padding,
                output_padding=op,
            )  # fmt: skip
            worst, _ = _parity(keras, make, ((5, 6), (8, 7)), 3, dtype)
            assert worst <= BAR[dtype], (padding, dtype, worst)


def test_conv2d_transpose_asymmetric_crop_and_rows(keras: ModuleType) -> None:
    """3×3 stride 2 'same': TF crops nothing before and one pixel after (a ConvTranspose2dSame)."""

    def make(**kw: Any) -> Any:
        return keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", **kw)

    worst, results = _parity(keras, make, [(5, 6)], 3, torch.float64)
    converted = results[0][0]
    assert worst <= 1e-12 and isinstance(converted.module, ConvTranspose2dSame)
    assert converted.module.crop == (1, 1) and converted.module.padding == (0, 0)
    assert [(m.keras_name, m.torch_name, m.shape) for m in converted.weights] == [
        ("kernel", "weight", (3, 3, 4, 3)),
        ("bias", "bias", (4,)),
    ]
    assert converted.module.weight.shape == (3, 4, 3, 3)  # (in, out, kh, kw)


def test_torch_symmetric_transpose_padding_is_caught(keras: ModuleType) -> None:
    """torch's ConvTranspose2d with Keras's torch-backend padding (symmetric, the shape right):
    the values of keras-team/keras#22876, not TensorFlow's."""
    from keras.src.backend.common.backend_utils import (
        _convert_conv_transpose_padding_args_from_keras_to_torch as keras_torch_args,
    )

    def make(**kw: Any) -> Any:
        return keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", **kw)

    worst, results = _parity(keras, make, [(6, 6)], 3, torch.float64)
    converted, ref, _, x = results[0]
    assert worst <= 1e-12
    with pytest.warns(UserWarning, match="inconsistencies across backends"):  # Keras knows
        pad, out_pad = keras_torch_args(3, 2, 1, "same", None)
    wrong = nn.ConvTranspose2d(3, 4, 3, 2, pad, out_pad, dtype=torch.float64)
    wrong.load_state_dict(converted.module.state_dict())
    with torch.no_grad():
        y = wrong(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert y.shape == ref.shape and max_abs(ref, y) > WRONG


def test_keras_and_converter_refuse_even_same_transpose_without_output_padding(
    keras: ModuleType,
) -> None:
    layer = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", output_padding=0)
    with pytest.raises(Exception, match=r"(?i)size|shape|Conv2DBackpropInput"):
        layer(np.zeros((1, 5, 5, 3), "float32"))
    call = keras_call(keras, layer)
    with pytest.raises(ConversionError, match="even kernel"):
        get_converter(call).build(call, [TensorSpec((5, 5, 3))], BuildContext())


# ---------------------------------------------------------------- errors, types, export


@pytest.mark.parametrize(
    ("cls", "config", "message"),
    [
        ("Conv2D", {"data_format": "channels_first"}, "channels_first"),
        ("Conv2D", {"padding": "causal"}, "Received: padding='causal'"),
        ("Conv2D", {"strides": [2, 2], "dilation_rate": [2, 2]}, "dilation_rate > 1"),
        ("Conv2D", {"groups": 2}, "divisible by groups"),
        ("Conv2D", {"filters": 0}, "Received: filters=0"),
        ("Conv2D", {"kernel_size": None}, "kernel_size"),
        ("Conv2D", {"activation": {"class_name": "LeakyReLU", "config": {}}}, "activation"),
        ("Conv2DTranspose", {"output_padding": [2, 2]}, "strictly less than `strides`"),
        ("Conv2DTranspose", {"strides": [2, 2], "dilation_rate": [2, 2]}, "dilation_rate > 1"),
        ("DepthwiseConv2D", {"depth_multiplier": 0}, "depth_multiplier=0"),
    ],
)
def test_refusals(keras: ModuleType, cls: str, config: dict[str, Any], message: str) -> None:
    base = {"filters": 3, "kernel_size": [3, 3], "strides": [2, 2]}
    if cls == "DepthwiseConv2D":
        base = {"kernel_size": [3, 3]}
    call = keras_call(keras, getattr(keras.layers, cls)(**base))
    call = type(call)(call.name, call.class_name, {**call.config, **config}, call.module, call.args)
    with pytest.raises(ConversionError, match=re.escape(message)) as info:
        get_converter(call).build(call, [TensorSpec((9, 9, 3))], BuildContext())
    assert call.label in str(info.value)


def test_parameters_are_trainable_parameters(keras: ModuleType) -> None:
    layers = [
        keras.layers.Conv2D(4, 3),
        keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
        keras.layers.SeparableConv2D(4, 3, depth_multiplier=2),
        keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
    ]
    for layer in layers:
        call = keras_call(keras, layer)
        converted = get_converter(call).build(call, [TensorSpec((8, 8, 3))], BuildContext())
        params = dict(converted.module.named_parameters())
        assert sorted(params) == sorted(m.torch_name for m in converted.weights)
        assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in params.values())
        assert not list(converted.module.buffers())


def test_torch_export_of_converted_convs(keras: ModuleType) -> None:
    """torch.export traces the explicit-padding conv and the cropped transposed conv."""
    x = torch.randn(2, 3, 10, 11, generator=torch.Generator().manual_seed(0))
    for layer in (
        keras.layers.Conv2D(4, 3, strides=2, padding="same"),
        keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same"),
    ):
        call = keras_call(keras, layer)
        converted = get_converter(call).build(call, [TensorSpec((10, 11, 3))], BuildContext())
        module = converted.module.eval()
        exported = torch.export.export(module, (x,))
        with torch.no_grad():
            assert torch.equal(exported.module()(x), module(x))


def test_conv2d_same_native_symmetric_path_equals_explicit_padding() -> None:
    """Conv2dSame pads natively where TF's padding is symmetric: the explicit-pad values."""
    conv = Conv2dSame(3, 4, 4, 2, dtype=torch.float64)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        explicit = F.conv2d(F.pad(x, (1, 1, 1, 1)), conv.weight, conv.bias, 2)
        assert (conv(x) - explicit).abs().max() <= 1e-12
