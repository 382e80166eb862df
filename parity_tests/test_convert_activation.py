"""Activation converters against Keras: every activation by name, the activation layers, traps.

Keras's own layer is the reference (keras/src/layers/activations/,
keras/src/activations/activations.py on the TensorFlow backend); the converted torch
module runs through ``parity_tests.layer_harness``. Bars: float32 ≤ 1e-5, float64 ≤ 1e-12.
"""

from __future__ import annotations

import dataclasses
import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from parity_tests.layer_harness import BAR, DTYPES, TORCH_DTYPE, convert_layer, keras_call, max_abs
from torch_cnn.convert.registry import BuildContext, ConversionError, get_converter
from torch_cnn.layers.activations import (
    UnsupportedActivation,
    activation_names,
    get_activation,
    hard_sigmoid,
)
from torch_cnn.layers.spec import TensorSpec

pytestmark = pytest.mark.keras

NAMES = [n for n in activation_names() if n != "linear"]


def _inputs(shape: tuple[int, ...], dtype: str, seed: int, scale: float = 3.0) -> np.ndarray:
    """Normal values with the interesting points (0, ±3, ±6, ±1) mixed in."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, shape)
    flat = x.reshape(-1)
    special = np.array([0.0, 3.0, -3.0, 6.0, -6.0, 1.0, -1.0, 0.5, -0.5])
    flat[: special.size] = special[: flat.size]
    return x.astype(dtype)


def _run(keras: ModuleType, layer: Any, x: np.ndarray, dtype: str) -> tuple[Any, float]:
    converted, k, t = convert_layer(keras, layer, [x], dtype=TORCH_DTYPE[dtype])
    assert k.shape == t.shape
    return converted, max_abs(k, t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_activation_layer_by_name(keras: ModuleType, name: str, dtype: str) -> None:
    """``Activation(name)`` on a map and on vectors: identity module, activation fused."""
    for shape, seed in (((4, 5, 6, 7), 1), ((8, 11), 2)):
        x = _inputs(shape, dtype, seed)
        if name == "exponential":  # exp(x) ≤ 55: an absolute bar of 1e-5 is a few ulps
            x = np.clip(x, -4.0, 4.0)
        layer = keras.layers.Activation(name, dtype=dtype)
        converted, delta = _run(keras, layer, x, dtype)
        assert isinstance(converted.module, nn.Identity)
        assert converted.activation == {"swish": "silu", "hard_swish": "hard_silu"}.get(name, name)
        assert delta <= BAR[dtype], f"{name} {dtype} {shape}: max|Δ| = {delta:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "softplus", "gelu", "silu", "mish", "tanh", "elu"])
def test_activation_wide_range(keras: ModuleType, name: str, dtype: str) -> None:
    """Saturating activations over ±40, where TF's thresholds and formulas show."""
    x = np.linspace(-40.0, 40.0, 4001).astype(dtype)[None, :]
    _, delta = _run(keras, keras.layers.Activation(name, dtype=dtype), x, dtype)
    assert delta <= BAR[dtype], f"{name} {dtype}: max|Δ| = {delta:.3g}"


def _keras_fn(keras: ModuleType, name: str, x: np.ndarray, **kw: Any) -> np.ndarray:
    return np.asarray(getattr(keras.activations, name)(keras.ops.convert_to_tensor(x), **kw))


def test_gelu_with_the_wrong_approximation_is_caught(keras: ModuleType) -> None:
    """Keras's gelu *function* is the erf form; the tanh approximation is the op's default."""
    for dtype in DTYPES:
        x = _inputs((64, 64), dtype, 3)
        ref = _keras_fn(keras, "gelu", x)
        spec = TensorSpec((64,))
        right = get_activation("gelu", spec)
        wrong = get_activation({"class_name": "function", "config": "gelu"}, spec)
        assert right is not None and wrong is not None
        t = torch.from_numpy(x)
        assert max_abs(ref, right(t).numpy()) <= BAR[dtype]
        assert max_abs(ref, wrong(t).numpy()) <= BAR[dtype]  # the same function, by dict
        tanh_gelu = torch.nn.functional.gelu(t, approximate="tanh").numpy()
        assert max_abs(ref, tanh_gelu) > 1e-4, "the tanh approximation must be caught"


def test_float64_gelu_needs_tf_float32_constants(keras: ModuleType) -> None:
    """TF's float64 gelu uses float32(1/sqrt(2)): torch's exact erf form is 5e-9 away."""
    x = _inputs((64, 64), "float64", 4)
    ref = _keras_fn(keras, "gelu", x)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    assert max_abs(ref, exact) > 1e-10
    fn = get_activation("gelu", TensorSpec((64,)))
    assert fn is not None
    assert max_abs(ref, fn(torch.from_numpy(x)).numpy()) <= 1e-12


def test_old_hard_sigmoid_is_caught(keras: ModuleType) -> None:
    """Keras 3's hard_sigmoid is relu6(x + 3) / 6, not Keras 2's clip(0.2 x + 0.5)."""
    x = _inputs((64, 64), "float64", 5)
    ref = _keras_fn(keras, "hard_sigmoid", x)
    t = torch.from_numpy(x)
    assert max_abs(ref, hard_sigmoid(t).numpy()) == 0.0
    old = torch.clamp(0.2 * t + 0.5, 0.0, 1.0).numpy()
    assert max_abs(ref, old) > 1e-2


def test_softplus_with_torch_threshold_is_caught_in_float64(keras: ModuleType) -> None:
    """TF's softplus returns x above 34 in float64; torch's default does so above 20."""
    x = np.linspace(15.0, 34.0, 200)[None, :]
    ref = _keras_fn(keras, "softplus", x)
    fn = get_activation("softplus", TensorSpec((200,)))
    assert fn is not None
    assert max_abs(ref, fn(torch.from_numpy(x)).numpy()) <= 1e-12
    torch_default = torch.nn.functional.softplus(torch.from_numpy(x)).numpy()
    assert max_abs(ref, torch_default) > 1e-10


def test_softmax_acts_on_the_channels_of_a_map(keras: ModuleType) -> None:
    """Keras's softmax axis -1 is the channel axis: torch dim 1 of NCHW, not the width."""
    x = _inputs((2, 5, 5, 5), "float64", 6)  # H = W = C, so a wrong dim keeps the shape
    _, k, t = convert_layer(keras, keras.layers.Activation("softmax", dtype="float64"), [x])
    assert max_abs(k, t) <= 1e-12
    wrong = torch.softmax(torch.from_numpy(x).permute(0, 3, 1, 2), dim=-1)
    assert max_abs(k, wrong.permute(0, 2, 3, 1).numpy()) > 1e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"max_value": 6.0},
        {"max_value": 2.5},
        {"negative_slope": 0.1},
        {"threshold": 0.7},
        {"negative_slope": 0.2, "threshold": 1.5},
        {"negative_slope": 0.3, "max_value": 6.0},
        {"negative_slope": 0.25, "max_value": 4.0, "threshold": 0.5},
        {"max_value": 1.0, "threshold": 0.5},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default",
)
def test_relu_layer(keras: ModuleType, options: dict[str, float], dtype: str) -> None:
    for shape, seed in (((3, 6, 6, 4), 7), ((16, 9), 8)):
        x = _inputs(shape, dtype, seed)
        _, delta = _run(keras, keras.layers.ReLU(**options, dtype=dtype), x, dtype)
        assert delta <= BAR[dtype], f"ReLU({options}) {dtype}: max|Δ| = {delta:.3g}"


def test_relu_layer_uses_native_modules_where_exact(keras: ModuleType) -> None:
    x = [_inputs((2, 3), "float32", 0)]
    kinds = {
        (): nn.ReLU,
        (("max_value", 6.0),): nn.ReLU6,
        (("negative_slope", 0.1),): nn.LeakyReLU,
    }
    for options, kind in kinds.items():
        converted, _, _ = convert_layer(keras, keras.layers.ReLU(**dict(options)), x)
        assert type(converted.module) is kind


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("slope", [None, 0.1, 0.01, 0.5])
def test_leaky_relu_layer(keras: ModuleType, slope: float | None, dtype: str) -> None:
    options = {} if slope is None else {"negative_slope": slope}
    x = _inputs((4, 5, 5, 3), dtype, 9)
    converted, delta = _run(keras, keras.layers.LeakyReLU(**options, dtype=dtype), x, dtype)
    assert delta <= BAR[dtype]
    expected = np.float32(0.3 if slope is None else slope)  # TF's LeakyRelu alpha is a float32
    assert converted.module.negative_slope == float(expected)


def test_leaky_relu_with_torch_slope_is_caught(keras: ModuleType) -> None:
    """Keras's LeakyReLU layer defaults to 0.3; torch's nn.LeakyReLU to 0.01."""
    x = _inputs((4, 5, 5, 3), "float32", 10)
    layer = keras.layers.LeakyReLU()
    _, k, t = convert_layer(keras, layer, [x], dtype=torch.float32)
    assert max_abs(k, t) <= 1e-5
    wrong = nn.LeakyReLU()(torch.from_numpy(x)).numpy()
    assert max_abs(k, wrong) > 1e-2


def test_float64_leaky_relu_slope_is_rounded_to_float32(keras: ModuleType) -> None:
    """TF's LeakyRelu op takes alpha as a float32 attribute, so float64 Keras uses float32(0.3)."""
    x = _inputs((4, 5, 5, 3), "float64", 11)
    layer = keras.layers.LeakyReLU(dtype="float64")
    _, k, t = convert_layer(keras, layer, [x])
    assert max_abs(k, t) <= 1e-12
    exact_slope = torch.nn.functional.leaky_relu(torch.from_numpy(x), 0.3).numpy()
    assert max_abs(k, exact_slope) > 1e-9


def test_keras2_leaky_relu_alpha(keras: ModuleType) -> None:
    """Keras 2 configs call the slope ``alpha``."""
    layer = keras.layers.LeakyReLU(negative_slope=0.15)
    x = _inputs((6, 7), "float32", 12)
    ref = np.asarray(layer(x))
    call = keras_call(keras, layer)
    config = {k: v for k, v in call.config.items() if k != "negative_slope"} | {"alpha": 0.15}
    call = dataclasses.replace(call, config=config, module=None)
    converted = get_converter(call).build(call, [TensorSpec((7,))], BuildContext())
    assert max_abs(ref, converted.module(torch.from_numpy(x)).detach().numpy()) <= 1e-5


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu_layer(keras: ModuleType, alpha: float, dtype: str) -> None:
    x = _inputs((3, 4, 4, 5), dtype, 13)
    _, delta = _run(keras, keras.layers.ELU(alpha=alpha, dtype=dtype), x, dtype)
    assert delta <= BAR[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [-1, 1, 2, 3, [1, 2], [1, 2, 3], [3]], ids=str)
def test_softmax_layer_on_maps(keras: ModuleType, axis: Any, dtype: str) -> None:
    x = _inputs((2, 4, 5, 6), dtype, 14)
    _, delta = _run(keras, keras.layers.Softmax(axis=axis, dtype=dtype), x, dtype)
    assert delta <= BAR[dtype], f"Softmax(axis={axis}): max|Δ| = {delta:.3g}"


def test_softmax_layer_on_vectors(keras: ModuleType) -> None:
    for dtype in DTYPES:
        x = _inputs((8, 10), dtype, 15)
        converted, delta = _run(keras, keras.layers.Softmax(dtype=dtype), x, dtype)
        assert isinstance(converted.module, nn.Softmax) and converted.module.dim == 1
        assert delta <= BAR[dtype]


def _randomize(layer: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0.0, 0.5, w.shape).astype(w.dtype) for w in layer.get_weights()])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("shape", "shared_axes"),
    [
        ((5, 6, 3), None),
        ((5, 6, 3), [1, 2]),
        ((5, 6, 3), [1]),
        ((5, 6, 3), [3]),
        ((7,), None),
        ((4, 7), None),
        ((4, 7), [1]),
    ],
    ids=str,
)
def test_prelu_layer(
    keras: ModuleType, shape: tuple[int, ...], shared_axes: list[int] | None, dtype: str
) -> None:
    x = _inputs((4, *shape), dtype, 16)
    layer = keras.layers.PReLU(shared_axes=shared_axes, dtype=dtype)
    layer(x)
    _randomize(layer, 17)
    converted, delta = _run(keras, layer, x, dtype)
    assert delta <= BAR[dtype]
    weight = converted.module.weight
    assert isinstance(weight, nn.Parameter)
    alpha_shape = tuple(np.asarray(layer.get_weights()[0]).shape)
    if len(shape) == 3:  # torch layout of a map's alpha: (C, H, W)
        assert tuple(weight.shape) == (alpha_shape[2], alpha_shape[0], alpha_shape[1])
    else:
        assert tuple(weight.shape) == alpha_shape


def test_prelu_gradient_matches_keras(keras: ModuleType) -> None:
    """The float64 gradients w.r.t. the input and alpha (training bar 1e-10)."""
    import tensorflow as tf

    x = _inputs((4, 5, 6, 3), "float64", 18)
    layer = keras.layers.PReLU(shared_axes=[1, 2], dtype="float64")
    layer(x)
    _randomize(layer, 19)
    converted, _, _ = convert_layer(keras, layer, [x])
    xt = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(xt) ** 2)
    gx, galpha = tape.gradient(loss, [xt, layer.trainable_weights[0]])
    t = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)
    (converted.module(t) ** 2).sum().backward()
    assert t.grad is not None and converted.module.weight.grad is not None
    assert max_abs(np.asarray(gx), t.grad.permute(0, 2, 3, 1).numpy()) <= 1e-10
    g_alpha = converted.module.weight.grad.permute(1, 2, 0).numpy()
    assert max_abs(np.asarray(galpha), g_alpha) <= 1e-10


def test_dense_with_a_layer_activation(keras: ModuleType) -> None:
    """``Dense(activation=LeakyReLU(0.1))`` stores a layer dict; it is carried as JSON."""
    for dtype in DTYPES:
        x = _inputs((6, 5), dtype, 20)
        # The nested layer computes in its own dtype policy: give it the Dense's.
        act = keras.layers.LeakyReLU(0.1, dtype=dtype)
        layer = keras.layers.Dense(4, activation=act, dtype=dtype)
        layer(x)
        converted, delta = _run(keras, layer, x, dtype)
        assert json.loads(converted.activation)["class_name"] == "LeakyReLU"
        assert delta <= BAR[dtype]


def test_identifier_forms() -> None:
    spec = TensorSpec((3,))
    x = torch.tensor([[-2.0, 0.5, 3.0]])
    by_name = get_activation("relu6", spec)
    by_dict = get_activation(
        {"module": "keras.activations", "class_name": "function", "config": "relu6"}, spec
    )
    assert by_name is not None and by_dict is not None
    assert torch.equal(by_name(x), by_dict(x))
    layer_dict = {"class_name": "LeakyReLU", "config": {"name": "l", "alpha": 0.5}}  # Keras 2
    fn = get_activation(json.dumps(layer_dict), spec)
    assert fn is not None
    assert torch.equal(fn(x), torch.tensor([[-1.0, 0.5, 3.0]]))
    assert get_activation(None, spec) is None and get_activation("linear", spec) is None


def test_unknown_activations_are_refused(keras: ModuleType) -> None:
    spec = TensorSpec((3,))
    with pytest.raises(UnsupportedActivation, match=r"Supported: .*relu6"):
        get_activation("relu7", spec)
    with pytest.raises(UnsupportedActivation, match="custom"):
        get_activation(
            {"class_name": "function", "config": "my_act", "registered_name": "pkg>my_act"}, spec
        )
    call = keras_call(keras, keras.layers.Activation("relu"))
    call = dataclasses.replace(call, config=dict(call.config) | {"activation": "glu"})
    with pytest.raises(ConversionError, match=r"Activation.*'glu' is not supported"):
        get_converter(call).build(call, [spec], BuildContext())
