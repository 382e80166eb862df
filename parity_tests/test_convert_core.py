"""Core converters against Keras: Dense on any rank (and after a torch-order Flatten),
Identity, Rescaling, and the noise layers (identity at inference, Keras's scaling in training).

keras/src/layers/core/dense.py, keras/src/layers/preprocessing/rescaling.py,
keras/src/layers/regularization/. Bars: float32 ≤ 1e-5, float64 ≤ 1e-12.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from parity_tests.layer_harness import BAR, DTYPES, TORCH_DTYPE, convert_layer, keras_call, max_abs
from torch_cnn.convert.registry import BuildContext, ConversionError, Converted, get_converter
from torch_cnn.layers.activations import get_activation
from torch_cnn.layers.core import ChannelLinear
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import load_layer_arrays

pytestmark = pytest.mark.keras


def _x(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, shape).astype(dtype)


def _randomize(layer: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])


def _build(keras: ModuleType, layer: Any, spec: TensorSpec, dtype: str) -> Converted:
    """Convert ``layer`` for an input described by ``spec`` (a torch-order Flatten, say)."""
    call = keras_call(keras, layer)
    converted = get_converter(call).build(call, [spec], BuildContext(dtype=TORCH_DTYPE[dtype]))
    arrays = [np.asarray(w) for w in layer.get_weights()]
    load_layer_arrays(converted.module, converted.weights, arrays, layer.name)
    converted.module.eval()
    return converted


# --- Dense --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape", [(12,), (5, 6, 7), (4, 9), (2, 3, 4, 5)], ids=["vector", "map", "rank2", "rank4"]
)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("activation", [None, "relu", "softmax"])
def test_dense(
    keras: ModuleType, shape: tuple[int, ...], use_bias: bool, activation: str | None, dtype: str
) -> None:
    x = _x((3, *shape), dtype, 1)
    layer = keras.layers.Dense(8, activation=activation, use_bias=use_bias, dtype=dtype)
    layer(x)
    _randomize(layer, 2)
    converted, k, t = convert_layer(keras, layer, [x], dtype=TORCH_DTYPE[dtype])
    assert isinstance(converted.module, nn.Linear)
    assert isinstance(converted.module, ChannelLinear) == (len(shape) == 3)
    assert set(converted.module.state_dict()) == ({"weight", "bias"} if use_bias else {"weight"})
    assert converted.activation == (activation or "linear")
    delta = max_abs(k, t)
    assert delta <= BAR[dtype], f"Dense on {shape} {dtype}: max|Δ| = {delta:.3g}"


def test_dense_on_a_map_on_the_wrong_axis_is_caught(keras: ModuleType) -> None:
    """Keras's Dense acts on the channels (torch dim 1), not on torch's last dim (the width)."""
    x = _x((2, 6, 5, 5), "float64", 3)  # W = C, so the wrong axis keeps every shape
    layer = keras.layers.Dense(5, dtype="float64")
    layer(x)
    _randomize(layer, 4)
    converted, k, t = convert_layer(keras, layer, [x])
    assert max_abs(k, t) <= 1e-12
    linear = converted.module
    wrong = nn.functional.linear(
        torch.from_numpy(x).permute(0, 3, 1, 2), linear.weight, linear.bias
    )
    assert max_abs(k, wrong.detach().permute(0, 2, 3, 1).numpy()) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_after_a_torch_order_flatten(keras: ModuleType, dtype: str) -> None:
    """A Flatten that kept torch's (C, H, W) order: the Dense permutes its kernel rows."""
    h, w, c = 3, 4, 5
    maps = _x((6, h, w, c), dtype, 5)
    layer = keras.layers.Dense(7, activation="softmax", dtype=dtype)
    layer.build((None, h * w * c))
    _randomize(layer, 6)
    keras_out = np.asarray(layer(maps.reshape(6, -1)))  # Keras flattens (H, W, C)
    converted = _build(keras, layer, TensorSpec((h * w * c,), chw=(c, h, w)), dtype)
    flat = torch.from_numpy(maps).permute(0, 3, 1, 2).reshape(6, -1)  # torch flattens (C, H, W)
    act = get_activation(converted.activation, converted.output)
    assert act is not None
    with torch.no_grad():
        out = act(converted.module(flat)).numpy()
    assert max_abs(keras_out, out) <= BAR[dtype]
    # Without the row permutation the same weights give other numbers.
    plain = _build(keras, layer, TensorSpec((h * w * c,)), dtype)
    with torch.no_grad():
        wrong = act(plain.module(flat)).numpy()
    assert max_abs(keras_out, wrong) > 1e-3
    # And the kernel goes back to Keras's layout unchanged.
    (kernel_map, _) = converted.weights
    back = kernel_map.to_keras(converted.module.weight.detach().numpy())
    assert np.array_equal(back, np.asarray(layer.get_weights()[0]).astype(back.dtype))


def test_dense_refusals(keras: ModuleType) -> None:
    layer = keras.layers.Dense(3)
    layer(np.zeros((1, 4), np.float32))
    call = keras_call(keras, layer)
    with pytest.raises(ConversionError, match="last axis"):
        get_converter(call).build(call, [TensorSpec((None,))], BuildContext())
    quantized = dataclasses.replace(call, config=dict(call.config) | {"dtype": "int8_from_float32"})
    with pytest.raises(ConversionError, match="quantized"):
        get_converter(quantized).build(quantized, [TensorSpec((4,))], BuildContext())
    lora = dataclasses.replace(call, config=dict(call.config) | {"lora_rank": 2})
    with pytest.raises(ConversionError, match="LoRA"):
        get_converter(lora).build(lora, [TensorSpec((4,))], BuildContext())


def test_dense_exports(keras: ModuleType) -> None:
    """``torch.export`` traces a converted Dense on vectors and on a map."""
    for shape in ((12,), (4, 4, 6)):
        x = _x((2, *shape), "float32", 7)
        layer = keras.layers.Dense(5)
        layer(x)
        converted, _, _ = convert_layer(keras, layer, [x], dtype=torch.float32)
        sample = torch.from_numpy(x)
        if len(shape) == 3:
            sample = sample.permute(0, 3, 1, 2).contiguous()
        exported = torch.export.export(converted.module, (sample,))
        expected = converted.module(sample)
        assert torch.equal(exported.module()(sample), expected)


# --- Identity, Rescaling --------------------------------------------------------------------


def test_identity(keras: ModuleType) -> None:
    x = _x((2, 3, 3, 2), "float32", 8)
    converted, k, t = convert_layer(keras, keras.layers.Identity(), [x], dtype=torch.float32)
    assert isinstance(converted.module, nn.Identity)
    assert max_abs(k, t) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("scale", "offset"),
    [
        (1 / 255, 0.0),
        (1 / 127.5, -1.0),
        ([0.1, 0.2, 0.3], 0.5),
        (np.array([0.1, 0.2, 0.3]), np.array([-1.0, 0.0, 1.0])),
        (0.5, [1.0, 2.0, 3.0]),
        (np.array([[[0.5]], [[2.0]]]), 0.0),  # (2, 1, 1): rows of the image
    ],
    ids=["1/255", "tf-mode", "list", "numpy", "list-offset", "per-row"],
)
def test_rescaling(keras: ModuleType, scale: Any, offset: Any, dtype: str) -> None:
    x = (np.random.default_rng(9).uniform(0, 255, (4, 2, 5, 3))).astype(dtype)
    layer = keras.layers.Rescaling(scale, offset=offset, dtype=dtype)
    _, k, t = convert_layer(keras, layer, [x], dtype=TORCH_DTYPE[dtype])
    delta = max_abs(k, t)
    assert delta <= BAR[dtype], f"Rescaling({scale}, {offset}) {dtype}: max|Δ| = {delta:.3g}"


def test_float64_rescaling_scale_goes_through_float32(keras: ModuleType) -> None:
    """Keras casts a Python-float scale through a float32 tensor: float32(1/255) in float64."""
    x = np.random.default_rng(10).uniform(0, 255, (4, 2, 5, 3))
    layer = keras.layers.Rescaling(1 / 255, dtype="float64")
    _, k, t = convert_layer(keras, layer, [x])
    assert max_abs(k, t) <= 1e-12
    assert max_abs(k, x * (1 / 255)) > 1e-10  # the exact double scale would be caught


# --- noise layers -------------------------------------------------------------------------


NOISE_LAYERS = {
    "Dropout": lambda k: k.layers.Dropout(0.3),
    "Dropout-noise_shape": lambda k: k.layers.Dropout(0.3, noise_shape=(None, 1, 1, 6)),
    "SpatialDropout2D": lambda k: k.layers.SpatialDropout2D(0.3),
    "GaussianNoise": lambda k: k.layers.GaussianNoise(0.2),
    "GaussianDropout": lambda k: k.layers.GaussianDropout(0.3),
}


@pytest.mark.parametrize("name", list(NOISE_LAYERS))
def test_noise_layers_are_the_identity_at_inference(keras: ModuleType, name: str) -> None:
    x = _x((4, 5, 5, 6), "float32", 11)
    _, k, t = convert_layer(keras, NOISE_LAYERS[name](keras), [x], dtype=torch.float32)
    assert max_abs(k, t) == 0.0
    assert max_abs(x, t) == 0.0


def _train(module: nn.Module, x: torch.Tensor, seed: int) -> torch.Tensor:
    module.train()
    torch.manual_seed(seed)
    with torch.no_grad():
        return module(x)


def _converted(keras: ModuleType, layer: Any, shape: tuple[int, ...]) -> nn.Module:
    call = keras_call(keras, layer)
    return get_converter(call).build(call, [TensorSpec(shape)], BuildContext()).module


def test_dropout_in_training(keras: ModuleType) -> None:
    """Keras's dropout: zero with probability rate, keep/(1 - rate); a seeded run repeats."""
    rate = 0.3
    module = _converted(keras, keras.layers.Dropout(rate), (64, 64, 8))
    x = torch.rand(8, 8, 64, 64, dtype=torch.float64) + 0.5  # no zeros of its own
    y = _train(module, x, 0)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - rate) < 0.01, dropped  # 262,144 draws: sd 0.0009
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15, atol=0)
    assert torch.equal(y, _train(module, x, 0))
    assert not torch.equal(y, _train(module, x, 1))


def test_dropout_noise_shape_and_spatial_dropout_drop_whole_channels(keras: ModuleType) -> None:
    x = torch.rand(16, 32, 6, 6, dtype=torch.float64) + 0.5
    for layer in (
        keras.layers.Dropout(0.4, noise_shape=(None, 1, 1, 32)),
        keras.layers.Dropout(0.4, noise_shape=(None, 1, 1, None)),
        keras.layers.SpatialDropout2D(0.4),
    ):
        module = _converted(keras, layer, (6, 6, 32))
        y = _train(module, x, 2)
        per_channel = (y == 0).flatten(2)
        assert torch.equal(per_channel.all(dim=2), per_channel.any(dim=2)), layer.name
        dropped = per_channel.all(dim=2).double().mean().item()
        assert abs(dropped - 0.4) < 0.08, (layer.name, dropped)  # 512 draws: sd 0.022
        kept = y != 0
        assert torch.allclose(y[kept], x[kept] / 0.6, rtol=1e-15, atol=0)


def test_dropout_noise_shape_per_row(keras: ModuleType) -> None:
    """A Keras noise shape (None, H, 1, 1) drops whole rows: torch (None, 1, H, 1)."""
    module = _converted(keras, keras.layers.Dropout(0.5, noise_shape=(None, 6, 1, 1)), (6, 7, 3))
    y = _train(module, torch.rand(64, 3, 6, 7, dtype=torch.float64) + 0.5, 3)
    rows = (y == 0).permute(0, 2, 1, 3).flatten(2)  # (N, H, C*W)
    assert torch.equal(rows.all(dim=2), rows.any(dim=2))


def test_gaussian_noise_and_dropout_in_training(keras: ModuleType) -> None:
    x = torch.full((64, 64, 64), 2.0, dtype=torch.float64)
    noise = _train(_converted(keras, keras.layers.GaussianNoise(0.2), (64, 64)), x, 4) - x
    assert abs(noise.mean().item()) < 3e-3 and abs(noise.std().item() - 0.2) < 3e-3
    rate = 0.3
    factor = _train(_converted(keras, keras.layers.GaussianDropout(rate), (64, 64)), x, 5) / x
    assert abs(factor.mean().item() - 1.0) < 5e-3
    assert abs(factor.std().item() - np.sqrt(rate / (1 - rate))) < 5e-3


def test_noise_layer_refusals(keras: ModuleType) -> None:
    call = keras_call(keras, keras.layers.Dropout(0.2, noise_shape=(None, 1, 5)))
    with pytest.raises(ConversionError, match="noise_shape"):
        get_converter(call).build(call, [TensorSpec((4, 4, 3))], BuildContext())
    call = keras_call(keras, keras.layers.SpatialDropout2D(0.2, data_format="channels_first"))
    with pytest.raises(ConversionError, match="channels_first"):
        get_converter(call).build(call, [TensorSpec((4, 4, 3))], BuildContext())
