"""Converters: Keras ops recorded in a functional graph, and Keras 2's ``TFOpLambda``.

Keras 3 records ``x + 3.0``, ``keras.ops.relu6(x)`` ... as graph nodes whose
``module`` is ``keras.src.ops.numpy``/``keras.src.ops.nn`` (class names ``Add``,
``Subtract``, ``Multiply``, ``TrueDivide``, ``Negative``, ``Relu6``, ``HardSigmoid``,
``Gelu`` ...); the constants are among the call's arguments, the options (``axis``,
``negative_slope``, ``approximate``) in the config (keras/src/ops/numpy.py,
keras/src/ops/nn.py). Keras 2 (tf_keras) records the TensorFlow function it called
as a ``TFOpLambda`` layer whose config names it (``"__operators__.add"``,
``"math.truediv"``, ``"nn.relu6"``), with the arguments in the call (``y=3.0``).

Supported: elementwise arithmetic between a tensor and a number or array (either
side) or between two tensors of the same rank, elementwise math (``negative``,
``sqrt``, ``clip`` ...) and the activation ops. Activation ops whose options are
those of the Keras activation function of that name become ``nn.Identity()`` with
the activation fused (so ``model.logits()`` skips a final ``keras.ops.softmax``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from torch_cnn.convert.builtin.core import broadcast_shape, constant_to_torch, keras_constant
from torch_cnn.convert.builtin.merge import merge_module
from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    TensorArg,
    register_keras_layer,
    single_input,
)
from torch_cnn.layers.activations import (
    KerasActivation,
    UnsupportedActivation,
    activation_defaults,
    activation_function,
)
from torch_cnn.layers.core import ScalarOp, UnaryOp
from torch_cnn.layers.spec import TensorSpec

__all__: list[str] = []

# Keras op class → the elementwise op (torch_cnn.layers.core.BINARY_OPS / UNARY_OPS).
_BINARY = {
    "Add": "add",
    "Subtract": "subtract",
    "Multiply": "multiply",
    "Divide": "divide",
    "TrueDivide": "divide",
    "Power": "power",
    "Maximum": "maximum",
    "Minimum": "minimum",
}
_UNARY = {
    "Negative": "negative",
    "Absolute": "absolute",
    "Square": "square",
    "Sqrt": "sqrt",
    "Exp": "exp",
    "Log": "log",
    "Tanh": "tanh",
    "Reciprocal": "reciprocal",
}
# Keras activation op class → (activation name, {option: the op's default}).
_ACTIVATION_OPS: dict[str, tuple[str, dict[str, Any]]] = {
    "Relu": ("relu", {}),
    "Relu6": ("relu6", {}),
    "Sigmoid": ("sigmoid", {}),
    "HardSigmoid": ("hard_sigmoid", {}),
    "HardSilu": ("hard_silu", {}),
    "Silu": ("silu", {}),
    "Gelu": ("gelu", {"approximate": True}),  # the op's default; the activation's is False
    "LeakyRelu": ("leaky_relu", {"negative_slope": 0.2}),
    "Softmax": ("softmax", {"axis": -1}),
    "LogSoftmax": ("log_softmax", {"axis": -1}),
    "Elu": ("elu", {"alpha": 1.0}),
    "Selu": ("selu", {}),
    "Softplus": ("softplus", {}),
    "Softsign": ("softsign", {}),
    "Celu": ("celu", {"alpha": 1.0}),
    "LogSigmoid": ("log_sigmoid", {}),
    "HardTanh": ("hard_tanh", {}),
    "TanhShrink": ("tanh_shrink", {}),
    "SoftShrink": ("soft_shrink", {"threshold": 0.5}),
    "HardShrink": ("hard_shrink", {"threshold": 0.5}),
    "SparsePlus": ("sparse_plus", {}),
    "SparseSigmoid": ("sparse_sigmoid", {}),
    "Squareplus": ("squareplus", {"b": 4}),
}


def _activation_op(
    call: KerasCall, spec: TensorSpec, name: str, options: Mapping[str, Any]
) -> Converted:
    """The activation ``name`` with ``options``: fused by name where the options are the
    Keras activation function's defaults, else a ``KerasActivation`` module."""
    try:
        fn = activation_function(name, spec, **options)
    except UnsupportedActivation as exc:
        raise call.error(str(exc)) from None
    assert fn is not None
    defaults = activation_defaults(name)
    if all(defaults.get(k, object()) == v for k, v in options.items()):
        return Converted(nn.Identity(), spec, activation=name)
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
    return Converted(KerasActivation(fn, f"{name}({shown})"), spec)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _binary(
    call: KerasCall,
    inputs: Sequence[TensorSpec],
    ctx: BuildContext,
    op: str,
    a: Any,
    b: Any,
) -> Converted:
    """``a op b`` where each side is a ``TensorArg`` or a constant."""
    if isinstance(a, TensorArg) and isinstance(b, TensorArg):
        for arg in (a, b):
            if not 0 <= arg.index < len(inputs):
                raise call.error(f"tensor argument {arg.index} of {len(inputs)} inputs")
        if len(inputs[a.index].shape) != len(inputs[b.index].shape):
            raise call.error(
                "elementwise ops between tensors of different ranks are not supported; "
                f"received {inputs[a.index].keras_str()} and {inputs[b.index].keras_str()}"
            )
        module, out = merge_module(call, op, inputs, [a.index, b.index])
        return Converted(module, out)
    reverse = not isinstance(a, TensorArg)
    tensor, constant = (b, a) if reverse else (a, b)
    if not isinstance(tensor, TensorArg) or not 0 <= tensor.index < len(inputs):
        raise call.error(f"expects a tensor argument; received {call.args!r}, {call.kwargs!r}")
    if len(inputs) != 1:
        raise call.error(f"expects one input tensor; received {len(inputs)}")
    spec = inputs[tensor.index]
    if _is_number(constant):
        value: Any = float(constant)  # Keras converts it straight to the tensor's dtype
        out = spec
    else:
        array = constant_to_torch(call, keras_constant(call, "constant", constant), spec)
        value = array
        keras_shape = (
            (array.shape[1], array.shape[2], array.shape[0])
            if spec.is_map and array.ndim == 3
            else array.shape
        )
        out = TensorSpec(broadcast_shape(call, [spec.shape, keras_shape]))
        if spec.chw is not None and out.shape != spec.shape:
            raise call.error("an array constant on a torch-order Flatten output is not supported")
    return Converted(ScalarOp(op, value, reverse=reverse, **ctx.factory), out)


def _args(call: KerasCall, names: Sequence[str]) -> dict[str, Any]:
    """The call's arguments by parameter name (positional first, then keywords; ``name`` dropped)."""
    if len(call.args) > len(names):
        raise call.error(f"expects at most {len(names)} arguments; received {call.args!r}")
    values = dict(zip(names, call.args, strict=False))
    for key, value in call.kwargs.items():
        if key == "name":
            continue
        if key in values:
            raise call.error(f"argument {key!r} given twice")
        values[key] = value
    return values


# --- Keras 3 ops ----------------------------------------------------------------------------


def _register_binary(class_name: str, op: str) -> None:
    def build(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
        args = _args(call, ("x1", "x2"))
        if set(args) != {"x1", "x2"}:
            raise call.error(f"expects two arguments; received {call.args!r}, {call.kwargs!r}")
        return _binary(call, inputs, ctx, op, args["x1"], args["x2"])

    build.__doc__ = f"keras.ops.{op} of a tensor and a constant or of two tensors."
    register_keras_layer(class_name, op=True)(build)


def _register_unary(class_name: str, op: str) -> None:
    def build(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
        return Converted(UnaryOp(op), single_input(call, inputs))

    build.__doc__ = f"keras.ops.{op}, elementwise."
    register_keras_layer(class_name, op=True, keeps_feature_order=True)(build)


def _register_activation(class_name: str, name: str, op_defaults: dict[str, Any]) -> None:
    def build(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
        spec = single_input(call, inputs)
        options = {k: call.config.get(k, d) for k, d in op_defaults.items()}
        extra = set(call.config) - set(op_defaults) - {"name", "dtype", "trainable"}
        if extra:
            raise call.error(f"unsupported options {sorted(extra)} in {dict(call.config)}")
        return _activation_op(call, spec, name, options)

    build.__doc__ = f"keras.ops.{name} (the activation)."
    register_keras_layer(class_name, op=True, keeps_feature_order=True)(build)


for _cls, _op in _BINARY.items():
    _register_binary(_cls, _op)
for _cls, _op in _UNARY.items():
    _register_unary(_cls, _op)
for _cls, (_name, _defaults) in _ACTIVATION_OPS.items():
    _register_activation(_cls, _name, _defaults)


@register_keras_layer("Clip", op=True, keeps_feature_order=True)
def clip(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.ops.clip(x, x_min, x_max)."""
    spec = single_input(call, inputs)
    lo, hi = call.config.get("x_min"), call.config.get("x_max")
    if (
        not (isinstance(lo, int | float) and isinstance(hi, int | float))
        or isinstance(lo, bool)
        or isinstance(hi, bool)
    ):
        raise call.error(f"x_min and x_max must be numbers. Received: x_min={lo!r}, x_max={hi!r}")
    return Converted(UnaryOp("clip", clip=(float(lo), float(hi))), spec)


# --- Keras 2: TFOpLambda ----------------------------------------------------------------------

# TF function (as tf_keras names it) → op, for f(x, y).
_TF_BINARY = {
    "__operators__.add": "add",
    "math.add": "add",
    "math.subtract": "subtract",
    "math.multiply": "multiply",
    "math.truediv": "divide",
    "math.divide": "divide",
    "math.pow": "power",
    "math.maximum": "maximum",
    "math.minimum": "minimum",
}
_TF_UNARY = {
    "math.negative": "negative",
    "math.abs": "absolute",
    "math.square": "square",
    "math.sqrt": "sqrt",
    "math.exp": "exp",
    "math.log": "log",
    "math.tanh": "tanh",
    "nn.tanh": "tanh",
    "math.reciprocal": "reciprocal",
}
# TF activation function → (activation name, its tensor parameter, {TF option: Keras option}).
_TF_ACTIVATIONS: dict[str, tuple[str, str, dict[str, str]]] = {
    "nn.relu": ("relu", "features", {}),
    "nn.relu6": ("relu6", "features", {}),
    "math.sigmoid": ("sigmoid", "x", {}),
    "nn.sigmoid": ("sigmoid", "x", {}),
    "nn.silu": ("silu", "features", {"beta": "beta"}),
    "nn.swish": ("silu", "features", {"beta": "beta"}),
    "nn.elu": ("elu", "features", {}),
    "nn.selu": ("selu", "features", {}),
    "nn.softplus": ("softplus", "features", {}),
    "math.softplus": ("softplus", "features", {}),
    "nn.softsign": ("softsign", "features", {}),
    "math.softsign": ("softsign", "features", {}),
    "math.log_sigmoid": ("log_sigmoid", "x", {}),
    "nn.leaky_relu": ("leaky_relu", "features", {"alpha": "negative_slope"}),
    "nn.gelu": ("gelu", "features", {"approximate": "approximate"}),
    "nn.softmax": ("softmax", "logits", {"axis": "axis"}),
}


def _tf_function(call: KerasCall) -> str:
    fn = call.config.get("function")
    if not isinstance(fn, str):
        raise call.error(f"the config names no TensorFlow function. Received: function={fn!r}")
    return fn.removeprefix("tf.")


@register_keras_layer("TFOpLambda")
def tf_op_lambda(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """Keras 2's ``TFOpLambda``: the arithmetic, elementwise and activation TF functions."""
    fn = _tf_function(call)
    if fn in _TF_BINARY:
        args = _args(call, ("x", "y"))
        if set(args) != {"x", "y"}:
            raise call.error(f"tf.{fn} expects x and y; received {call.args!r}, {call.kwargs!r}")
        return _binary(call, inputs, ctx, _TF_BINARY[fn], args["x"], args["y"])
    if fn in _TF_UNARY:
        args = _args(call, ("x",))
        if set(args) != {"x"} or not isinstance(args["x"], TensorArg):
            raise call.error(f"tf.{fn} expects one tensor x; received {call.args!r}")
        return Converted(UnaryOp(_TF_UNARY[fn]), single_input(call, inputs))
    if fn in _TF_ACTIVATIONS:
        name, param, option_names = _TF_ACTIVATIONS[fn]
        args = _args(call, (param, *option_names))
        if not isinstance(args.pop(param, None), TensorArg):
            raise call.error(f"tf.{fn} expects a tensor {param}; received {call.args!r}")
        unknown = set(args) - set(option_names)
        if unknown:
            raise call.error(f"tf.{fn}: unsupported arguments {sorted(unknown)}")
        options = {option_names[k]: v for k, v in args.items()}
        if "beta" in options:
            if options.pop("beta") != 1.0:
                raise call.error(f"tf.{fn} with beta != 1 is not supported")
        if name == "softmax" and options.get("axis", -1) is None:
            options["axis"] = -1  # tf.nn.softmax: axis=None is the last axis
        return _activation_op(call, single_input(call, inputs), name, options)
    supported = sorted({*_TF_BINARY, *_TF_UNARY, *_TF_ACTIVATIONS})
    raise call.error(
        f"TensorFlow function tf.{fn} is not supported. Supported: "
        + ", ".join(f"tf.{s}" for s in supported)
    )
