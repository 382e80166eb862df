"""Keras op nodes and Keras 2's TFOpLambda against Keras/TensorFlow, node by node.

A functional model built from ops (``x + 3.0``, ``3.0 - x``, ``keras.ops.relu6(x + 3) / 6``
...) is serialized as a ``.keras`` file stores it; every op node becomes a ``KerasCall``
(``__keras_tensor__`` arguments as ``TensorArg``) and its converted module is fed Keras's
own values of the node's inputs. TFOpLambda calls are written the way tf_keras records
them (the TF function in the config, ``y=3.0`` in the call) and compared with the TF
function itself, which is what tf_keras runs. Bars: float32 ≤ 1e-5, float64 ≤ 1e-12.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    max_abs,
    to_keras_layout,
    to_torch_layout,
)
from torch_cnn.convert.registry import (
    BuildContext,
    ConversionError,
    Converted,
    KerasCall,
    TensorArg,
    get_converter,
)
from torch_cnn.layers.activations import KerasActivation, get_activation
from torch_cnn.layers.core import ScalarOp
from torch_cnn.layers.spec import TensorSpec

pytestmark = pytest.mark.keras

T0, T1 = TensorArg(0), TensorArg(1)


def _op_graph(keras: ModuleType, dtype: str) -> tuple[Any, list[Any]]:
    """A functional model made of ops (the MobileNetV3 idioms and more); every tensor an output."""
    ops = keras.ops
    inp = keras.Input((4, 5, 3), dtype=dtype)
    t: list[Any] = []

    def keep(x: Any) -> Any:
        t.append(x)
        return x

    a = keep(inp + 3.0)
    b = keep(a * (1 / 6))
    c = keep(3.0 - b)
    d = keep(c / 2)
    e = keep(keep(ops.relu6(keep(d + 3))) / 6)
    f = keep(ops.hard_sigmoid(e))
    g = keep(keep(ops.sigmoid(f)) - inp)
    h = keep(-g)
    i = keep(ops.gelu(h))  # the op's default: the tanh approximation
    keep(ops.gelu(h, approximate=False))
    j = keep(ops.multiply(i, g))
    k = keep(ops.leaky_relu(j))
    keep(ops.leaky_relu(j, negative_slope=0.05))
    m = keep(ops.hard_silu(keep(ops.softmax(k))))
    keep(ops.softmax(k, axis=1))
    keep(ops.log_softmax(k))
    n = keep(keep(ops.relu(m)) ** 2)
    p = keep(ops.add(keep(ops.silu(n)), 1))
    q = keep(2.0 * p)
    r = keep(ops.maximum(q, 0.5))
    s = keep(ops.true_divide(r, q))
    keep(ops.divide(1.0, q))  # a constant over a tensor
    keep(ops.minimum(0.25, s))
    keep(abs(s))
    keep(ops.clip(h, -0.5, 0.75))
    keep(ops.sqrt(keep(ops.square(h))))
    keep(ops.exp(h))
    keep(ops.tanh(h))
    keep(ops.log(q))
    keep(ops.elu(h, alpha=0.5))
    keep(ops.selu(h))
    keep(ops.softplus(h))
    keep(keras.activations.relu(h, max_value=0.5, threshold=0.1))  # the ReLU operation
    keep(h - np.array([0.5, -1.0, 2.0]))  # an array constant over the channels
    keep(ops.power(q, 0.5))
    keep(ops.subtract(h, g))
    return keras.Model(inp, t), t


def _calls(keras: ModuleType, model: Any) -> list[tuple[KerasCall, list[str]]]:
    """Each op node as a KerasCall (as a .keras file records it) and its input node names."""
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))["config"]
    out = []
    for layer in config["layers"]:
        if layer["class_name"] == "InputLayer":
            continue
        (node,) = layer["inbound_nodes"]
        sources: list[str] = []

        def sub(v: Any, sources: list[str] = sources) -> Any:
            if isinstance(v, dict) and v.get("class_name") == "__keras_tensor__":
                src = v["config"]["keras_history"][0]
                if src not in sources:
                    sources.append(src)
                return TensorArg(sources.index(src))
            if isinstance(v, list):
                return [sub(x) for x in v]
            return v

        args = tuple(sub(a) for a in node["args"])
        kwargs = {k: sub(v) for k, v in node["kwargs"].items()}
        call = KerasCall(
            layer["config"]["name"],
            layer["class_name"],
            layer["config"],
            layer.get("module"),
            args,
            kwargs,
        )
        out.append((call, sources))
    return out


def _run(converted: Converted, xs: list[torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        y = converted.module(*xs)
        act = get_activation(converted.activation, converted.output)
        return act(y) if act is not None else y


@pytest.mark.parametrize("dtype", DTYPES)
def test_op_nodes_match_keras(keras: ModuleType, dtype: str) -> None:
    model, tensors = _op_graph(keras, dtype)
    x = np.random.default_rng(1).normal(0.0, 2.0, (3, 4, 5, 3)).astype(dtype)
    values = {model.inputs[0]._keras_history.operation.name: x} | {
        t._keras_history.operation.name: np.array(v) for t, v in zip(tensors, model(x), strict=True)
    }
    calls = _calls(keras, model)
    assert len(calls) == len(tensors)
    seen = set()
    for call, sources in calls:
        specs = [TensorSpec(tuple(values[s].shape[1:])) for s in sources]
        converted = get_converter(call).build(call, specs, BuildContext(dtype=TORCH_DTYPE[dtype]))
        inputs = [to_torch_layout(values[s], spec) for s, spec in zip(sources, specs, strict=True)]
        y = to_keras_layout(_run(converted, inputs), converted.output)
        ref = values[call.name]
        assert y.shape == ref.shape, call.label
        delta = max_abs(ref, y)
        assert delta <= BAR[dtype], f"{call.label} {call.args}: max|Δ| = {delta:.3g}"
        seen.add(call.class_name)
    assert {"Add", "Subtract", "Multiply", "TrueDivide", "Divide", "Relu6", "Gelu", "ReLU"} <= seen


def test_constant_over_tensor_divides(keras: ModuleType) -> None:
    """``1.0 / x`` divides bit for bit as TF does; torch's ``1.0 / tensor`` is a reciprocal."""
    x = np.random.default_rng(2).normal(0.0, 3.0, (1000, 7)).astype(np.float32)
    ref = np.asarray(keras.ops.divide(3.0, x))
    module = ScalarOp("divide", 3.0, reverse=True, dtype=torch.float32)
    assert max_abs(ref, module(torch.from_numpy(x)).numpy()) == 0.0
    assert not np.array_equal(ref, (3.0 / torch.from_numpy(x)).numpy())


def test_activation_ops_fuse_by_name_only_with_the_functions_defaults() -> None:
    """An activation op is fused by name where its options are the activation function's."""
    spec = [TensorSpec((4, 5, 3))]
    cases: list[tuple[str, dict[str, Any], type[nn.Module], str]] = [
        ("Sigmoid", {}, nn.Identity, "sigmoid"),
        ("Gelu", {"approximate": True}, KerasActivation, "linear"),  # the op's default
        ("Gelu", {"approximate": False}, nn.Identity, "gelu"),  # the function's default
        ("LeakyRelu", {"negative_slope": 0.2}, nn.Identity, "leaky_relu"),
        ("LeakyRelu", {"negative_slope": 0.05}, KerasActivation, "linear"),
        ("Softmax", {"axis": -1}, nn.Identity, "softmax"),
        ("Softmax", {"axis": 1}, KerasActivation, "linear"),
    ]
    for class_name, options, kind, activation in cases:
        config = {"name": "op"} | options
        call = KerasCall("op", class_name, config, "keras.src.ops.nn", (T0,))
        converted = get_converter(call).build(call, spec, BuildContext())
        assert type(converted.module) is kind, (class_name, options)
        assert converted.activation == activation, (class_name, options)


# --- TFOpLambda (Keras 2) ---------------------------------------------------------------------


def _c(value: float, like: Any) -> Any:
    import tensorflow as tf

    return tf.constant(value, like.dtype)  # TF makes a bare 3.0 float32


def _tf(name: str) -> Callable[..., Any]:
    import tensorflow as tf

    fn: Any = tf
    for part in name.split("."):
        fn = getattr(fn, part)
    return fn  # type: ignore[no-any-return]


# (function, args, kwargs as tf_keras records them, the TF call on (x, y)).
TF_CASES: list[tuple[str, tuple[Any, ...], dict[str, Any], Callable[..., Any]]] = [
    ("__operators__.add", (T0,), {"y": 3.0, "name": None}, lambda f, x, y: f(x, 3.0)),
    ("math.multiply", (T0,), {"y": 1 / 6, "name": None}, lambda f, x, y: f(x, 1 / 6)),
    ("math.subtract", (3.0,), {"y": T0, "name": None}, lambda f, x, y: f(3.0, x)),
    ("math.truediv", (T0,), {"y": 2, "name": None}, lambda f, x, y: f(x, 2)),
    ("math.truediv", (3.0,), {"y": T0, "name": None}, lambda f, x, y: f(_c(3.0, x), x)),
    ("math.maximum", (T0,), {"y": 0.1, "name": None}, lambda f, x, y: f(x, 0.1)),
    ("math.minimum", (T0, T1), {}, lambda f, x, y: f(x, y)),
    ("math.multiply", (T0,), {"y": T1}, lambda f, x, y: f(x, y)),
    ("math.subtract", (T0,), {"y": T1, "name": None}, lambda f, x, y: f(x, y)),
    ("math.pow", (T0,), {"y": 2.0}, lambda f, x, y: f(x, 2.0)),
    ("math.negative", (T0,), {"name": None}, lambda f, x, y: f(x)),
    ("math.abs", (T0,), {}, lambda f, x, y: f(x)),
    ("math.square", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.relu", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.relu6", (T0,), {}, lambda f, x, y: f(x)),
    ("math.sigmoid", (T0,), {"name": None}, lambda f, x, y: f(x)),
    ("nn.silu", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.elu", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.softplus", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.leaky_relu", (T0,), {"alpha": 0.1}, lambda f, x, y: f(x, alpha=0.1)),
    ("nn.leaky_relu", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.gelu", (T0,), {"approximate": True}, lambda f, x, y: f(x, approximate=True)),
    ("nn.gelu", (T0,), {}, lambda f, x, y: f(x)),
    ("nn.softmax", (T0,), {"axis": -1}, lambda f, x, y: f(x, axis=-1)),
    ("nn.softmax", (T0,), {}, lambda f, x, y: f(x)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("function", "args", "kwargs", "reference"),
    TF_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(TF_CASES)],
)
def test_tf_op_lambda(
    keras: ModuleType,
    function: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    reference: Callable[..., Any],
    dtype: str,
) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x, y = (rng.normal(0.5, 2.0, (3, 4, 5, 3)).astype(dtype) for _ in range(2))
    ref = np.asarray(reference(_tf(function), tf.constant(x), tf.constant(y)))
    config = {"name": "tf." + function, "trainable": True, "dtype": dtype, "function": function}
    call = KerasCall("tf." + function, "TFOpLambda", config, None, args, kwargs)
    n = 1 + any(a == T1 for a in (*args, *kwargs.values()))
    spec = TensorSpec((4, 5, 3))
    converted = get_converter(call).build(call, [spec] * n, BuildContext(dtype=TORCH_DTYPE[dtype]))
    out = _run(converted, [to_torch_layout(v, spec) for v in (x, y)[:n]])
    delta = max_abs(ref, to_keras_layout(out, converted.output))
    assert delta <= BAR[dtype], f"tf.{function} {args} {kwargs}: max|Δ| = {delta:.3g}"


def test_op_refusals() -> None:
    spec = [TensorSpec((3,))]
    call = KerasCall("x", "Einsum", {"name": "x"}, "keras.src.ops.numpy", (T0,))
    with pytest.raises(ConversionError, match=r"Supported: .*TrueDivide"):
        get_converter(call)
    call = KerasCall("t", "TFOpLambda", {"function": "math.cumsum"}, None, (T0,))
    with pytest.raises(ConversionError, match=r"tf\.math\.cumsum is not supported"):
        get_converter(call).build(call, spec, BuildContext())
    call = KerasCall("a", "Add", {"name": "a"}, "keras.src.ops.numpy", (T0, T1))
    with pytest.raises(ConversionError, match="different ranks"):
        get_converter(call).build(call, [TensorSpec((3,)), TensorSpec((2, 3))], BuildContext())
