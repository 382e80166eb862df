"""BatchNormalization and Normalization converters against Keras, in inference and training.

keras/src/layers/normalization/batch_normalization.py (moments from tf.nn.moments,
output from tf.nn.batch_normalization) and keras/src/layers/preprocessing/
normalization.py. Training is checked against the live Keras layer called with
``training=True``, batch after batch: outputs *and* moving statistics. Bars: float32
≤ 1e-5, float64 ≤ 1e-12 (forward and statistics), float64 gradients ≤ 1e-10.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from parity_tests.layer_harness import (
    BAR,
    DTYPES,
    TORCH_DTYPE,
    convert_layer,
    keras_call,
    max_abs,
    to_torch_layout,
)
from torch_cnn.convert.registry import BuildContext, ConversionError, Converted, get_converter
from torch_cnn.layers.norm import BatchNorm1d, BatchNorm2d, Normalization
from torch_cnn.layers.spec import TensorSpec

pytestmark = pytest.mark.keras

SHAPES = {"map": (5, 6, 4), "vector": (7,), "rank2": (3, 7), "rank4": (2, 3, 2, 5)}


def _x(shape: tuple[int, ...], dtype: str, seed: int, loc: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc, 2.0, shape).astype(dtype)


def _randomize_bn(layer: Any, seed: int) -> None:
    """Random gamma/beta/moving statistics (variance positive), in the layer's variable order."""
    rng = np.random.default_rng(seed)
    values = []
    for w in layer.weights:
        shape, dtype = tuple(w.shape), np.dtype(w.dtype)
        if "variance" in w.path:
            values.append(rng.uniform(0.2, 3.0, shape).astype(dtype))
        else:
            values.append(rng.normal(0.0, 1.0, shape).astype(dtype))
    layer.set_weights(values)


def _bn(keras: ModuleType, shape: tuple[int, ...], dtype: str, seed: int, **options: Any) -> Any:
    layer = keras.layers.BatchNormalization(dtype=dtype, **options)
    layer.build((None, *shape))
    _randomize_bn(layer, seed)
    return layer


def _stats(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(layer.moving_mean), np.asarray(layer.moving_variance)


# --- inference ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", list(SHAPES))
@pytest.mark.parametrize(
    "options",
    [{}, {"center": False}, {"scale": False}, {"center": False, "scale": False},
     {"epsilon": 1.001e-5, "momentum": 0.9}],
    ids=["default", "no-center", "no-scale", "neither", "resnet-eps"],
)  # fmt: skip
def test_batchnorm_inference(
    keras: ModuleType, where: str, options: dict[str, Any], dtype: str
) -> None:
    shape = SHAPES[where]
    layer = _bn(keras, shape, dtype, 1, **options)
    x = _x((4, *shape), dtype, 2)
    converted, k, t = convert_layer(keras, layer, [x], dtype=TORCH_DTYPE[dtype])
    module = converted.module
    assert isinstance(module, BatchNorm2d if where == "map" else BatchNorm1d)
    assert isinstance(module, nn.BatchNorm2d if where == "map" else nn.BatchNorm1d)
    assert (module.weight is not None) == options.get("scale", True)
    assert (module.bias is not None) == options.get("center", True)
    assert [m.keras_name for m in converted.weights] == [
        w.path.split("/")[-1] for w in layer.weights
    ]
    delta = max_abs(k, t)
    assert delta <= BAR[dtype], f"BN {where} {options} {dtype}: max|Δ| = {delta:.3g}"


def test_batchnorm_with_torch_epsilon_is_caught(keras: ModuleType) -> None:
    """Keras's epsilon is 1e-3; torch's 1e-5 moves the output well past the bar."""
    layer = _bn(keras, (5, 6, 4), "float32", 3)
    x = _x((4, 5, 6, 4), "float32", 4)
    converted, k, t = convert_layer(keras, layer, [x], dtype=torch.float32)
    assert max_abs(k, t) <= 1e-5
    wrong = BatchNorm2d(4, eps=1e-5)
    wrong.load_state_dict(converted.module.state_dict())
    with torch.no_grad():
        out = wrong.eval()(to_torch_layout(x, TensorSpec((5, 6, 4)))).permute(0, 2, 3, 1)
    assert max_abs(k, out.numpy()) > 1e-4


def test_batchnorm_exports(keras: ModuleType) -> None:
    for shape in ((5, 6, 4), (7,)):
        layer = _bn(keras, shape, "float32", 5)
        x = _x((3, *shape), "float32", 6)
        converted, _, _ = convert_layer(keras, layer, [x], dtype=torch.float32)
        sample = to_torch_layout(x, TensorSpec(shape))
        exported = torch.export.export(converted.module.eval(), (sample,))
        assert torch.equal(exported.module()(sample), converted.module(sample))


# --- training -----------------------------------------------------------------------------


def _train_against_keras(
    keras: ModuleType, layer: Any, module: nn.Module, shape: tuple[int, ...], dtype: str
) -> tuple[float, float]:
    """Three training batches through both; the largest output and statistics deltas."""
    spec = TensorSpec(shape)
    module.train()
    out_delta = stat_delta = 0.0
    for step in range(3):
        x = _x((6, *shape), dtype, 10 + step, loc=0.5 + step)
        k = np.asarray(layer(x, training=True))
        with torch.no_grad():
            t = module(to_torch_layout(x, spec).to(TORCH_DTYPE[dtype]))
        if spec.is_map:
            t = t.permute(0, 2, 3, 1)
        out_delta = max(out_delta, max_abs(k, t.numpy()))
        mean, var = _stats(layer)
        assert module.running_mean is not None and module.running_var is not None
        stat_delta = max(
            stat_delta,
            max_abs(mean, module.running_mean.numpy()),
            max_abs(var, module.running_var.numpy()),
        )
    return out_delta, stat_delta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("where", list(SHAPES))
@pytest.mark.parametrize(
    "options",
    [{}, {"momentum": 0.9, "epsilon": 0.01}, {"momentum": 0.5, "center": False},
     {"synchronized": True}],
    ids=["default", "m0.9-eps0.01", "m0.5-no-center", "synchronized"],
)  # fmt: skip
def test_batchnorm_training_matches_keras(
    keras: ModuleType, where: str, options: dict[str, Any], dtype: str
) -> None:
    shape = SHAPES[where]
    layer = _bn(keras, shape, dtype, 7, **options)
    converted, _, _ = convert_layer(
        keras, layer, [_x((2, *shape), dtype, 8)], dtype=TORCH_DTYPE[dtype]
    )
    out_delta, stat_delta = _train_against_keras(keras, layer, converted.module, shape, dtype)
    assert out_delta <= BAR[dtype], f"outputs: max|Δ| = {out_delta:.3g}"
    assert stat_delta <= BAR[dtype], f"moving statistics: max|Δ| = {stat_delta:.3g}"


def test_frozen_batchnorm_uses_moving_statistics_in_training(keras: ModuleType) -> None:
    """Keras 3: ``trainable=False`` means inference-mode statistics, even with training=True."""
    shape = (5, 6, 4)
    layer = _bn(keras, shape, "float64", 9, momentum=0.8)
    layer.trainable = False
    converted, _, _ = convert_layer(keras, layer, [_x((2, *shape), "float64", 8)])
    module = converted.module
    assert module.trainable is False
    assert all(not p.requires_grad for p in module.parameters())
    before = [b.clone() for b in (module.running_mean, module.running_var)]
    out_delta, stat_delta = _train_against_keras(keras, layer, module, shape, "float64")
    assert out_delta <= 1e-12 and stat_delta <= 1e-12
    after = (module.running_mean, module.running_var)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("variant", ["unbiased-variance", "torch-momentum", "torch-eps"])
def test_wrong_training_batchnorm_is_caught(keras: ModuleType, variant: str) -> None:
    """torch's own BatchNorm2d: unbiased moving variance, Keras's momentum read torch's way,
    torch's epsilon: each fails the training check against Keras."""
    shape = (5, 6, 4)
    layer = _bn(keras, shape, "float64", 11, momentum=0.9)
    converted, _, _ = convert_layer(keras, layer, [_x((2, *shape), "float64", 8)])
    momentum = 0.9 if variant == "torch-momentum" else 0.1  # torch's is 1 - Keras's
    eps = 1e-5 if variant == "torch-eps" else 1e-3
    wrong = nn.BatchNorm2d(4, eps=eps, momentum=momentum, dtype=torch.float64)
    wrong.load_state_dict(converted.module.state_dict())
    out_delta, stat_delta = _train_against_keras(keras, layer, wrong, shape, "float64")
    caught = out_delta if variant == "torch-eps" else stat_delta
    assert caught > 1e-5, f"{variant}: outputs {out_delta:.3g}, statistics {stat_delta:.3g}"
    if variant == "unbiased-variance":  # the batch is normalized right; only the update is off
        assert out_delta <= 1e-12


def test_batchnorm_gradients_match_keras(keras: ModuleType) -> None:
    """float64 training-mode gradients w.r.t. the input, gamma and beta."""
    import tensorflow as tf

    shape = (5, 6, 4)
    layer = _bn(keras, shape, "float64", 12, momentum=0.9)
    converted, _, _ = convert_layer(keras, layer, [_x((2, *shape), "float64", 8)])
    module = converted.module.train()
    x = _x((6, *shape), "float64", 13)
    r = _x((6, *shape), "float64", 14)
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(xv, training=True) * r)
    gx, ggamma, gbeta = tape.gradient(loss, [xv, layer.gamma, layer.beta])
    spec = TensorSpec(shape)
    xt = to_torch_layout(x, spec).requires_grad_(True)
    (module(xt) * to_torch_layout(r, spec)).sum().backward()
    assert xt.grad is not None and module.weight.grad is not None and module.bias.grad is not None
    assert max_abs(np.asarray(gx), xt.grad.permute(0, 2, 3, 1).numpy()) <= 1e-10
    assert max_abs(np.asarray(ggamma), module.weight.grad.numpy()) <= 1e-10
    assert max_abs(np.asarray(gbeta), module.bias.grad.numpy()) <= 1e-10


# --- configs ------------------------------------------------------------------------------


def _build(call: Any, spec: TensorSpec) -> Converted:
    return get_converter(call).build(call, [spec], BuildContext(dtype=torch.float64))


def test_batchnorm_configs(keras: ModuleType) -> None:
    call = keras_call(keras, keras.layers.BatchNormalization())
    keras2 = dataclasses.replace(call, config=dict(call.config) | {"axis": [3]}, module=None)
    assert isinstance(_build(keras2, TensorSpec((5, 6, 4))).module, BatchNorm2d)
    for bad, match in (
        ({"axis": 1}, "channel axis"),
        ({"renorm": True}, "renorm"),
        ({"virtual_batch_size": 4}, "virtual_batch_size"),
    ):
        wrong = dataclasses.replace(call, config=dict(call.config) | bad)
        with pytest.raises(ConversionError, match=match):
            _build(wrong, TensorSpec((5, 6, 4)))
    with pytest.raises(ConversionError, match="channels"):
        _build(call, TensorSpec((5, 6, None)))


# --- Normalization ------------------------------------------------------------------------


def _normalization(
    keras: ModuleType, layer: Any, x: np.ndarray, dtype: str
) -> tuple[Converted, float]:
    """Like the harness, but copies the int ``count`` too (the harness takes floats only)."""
    ref = np.asarray(layer(x))
    call = keras_call(keras, layer)
    spec = TensorSpec(tuple(x.shape[1:]))
    converted = get_converter(call).build(call, [spec], BuildContext(dtype=TORCH_DTYPE[dtype]))
    arrays = [np.asarray(w) for w in layer.get_weights()]
    assert len(arrays) == len(converted.weights)
    state = dict(converted.module.named_buffers())
    with torch.no_grad():
        for m, a in zip(converted.weights, arrays, strict=True):
            assert a.shape == m.shape, (m.keras_name, a.shape, m.shape)
            # np.array, not ascontiguousarray: that makes the 0-d count 1-d.
            state[m.torch_name].copy_(torch.from_numpy(np.array(m.to_torch(a))))
            back = m.to_keras(state[m.torch_name].numpy())
            assert np.array_equal(back, a.astype(back.dtype)), m.keras_name
    with torch.no_grad():
        out = converted.module(to_torch_layout(x, spec).to(TORCH_DTYPE[dtype]))
    if spec.is_map:
        out = out.permute(0, 2, 3, 1)
    return converted, max_abs(ref, out.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, None, (1, 2, 3), (2, 3)], ids=str)
def test_adapted_normalization(keras: ModuleType, axis: Any, dtype: str) -> None:
    data = _x((32, 4, 5, 3), dtype, 15, loc=3.0)
    data[..., 0] = 7.0  # one channel with zero variance: the 1e-7 floor
    layer = keras.layers.Normalization(axis=axis, dtype=dtype)
    layer.adapt(data)
    converted, delta = _normalization(keras, layer, _x((4, 4, 5, 3), dtype, 16), dtype)
    module = converted.module
    assert isinstance(module, Normalization)
    assert [m.keras_name for m in converted.weights] == ["mean", "variance", "count"]
    assert module.count is not None and int(module.count) == int(np.asarray(layer.count))
    assert delta <= BAR[dtype], f"Normalization(axis={axis}) {dtype}: max|Δ| = {delta:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_normalization_with_config_statistics(keras: ModuleType, dtype: str) -> None:
    """mean/variance in the config: constants, through float32 as Keras converts lists."""
    for shape, mean, variance in (
        ((4, 5, 3), [0.1, 0.2, 0.3], [0.7, 1.3, 2.9]),
        ((6,), 0.3, 1.7),
        ((6,), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [1.1, 1.2, 1.3, 1.4, 1.5, 1.6]),
    ):
        layer = keras.layers.Normalization(mean=mean, variance=variance, dtype=dtype)
        converted, delta = _normalization(keras, layer, _x((4, *shape), dtype, 17), dtype)
        assert converted.weights == ()
        assert converted.module.state_dict() == {}
        assert delta <= BAR[dtype], f"Normalization({mean}) {dtype}: max|Δ| = {delta:.3g}"


def test_normalization_refusals(keras: ModuleType) -> None:
    call = keras_call(keras, keras.layers.Normalization(mean=1.0, variance=2.0, invert=True))
    with pytest.raises(ConversionError, match="invert"):
        _build(call, TensorSpec((3,)))
    call = keras_call(keras, keras.layers.Normalization(axis=1))
    with pytest.raises(ConversionError, match="known sizes"):
        _build(call, TensorSpec((None, 3)))
