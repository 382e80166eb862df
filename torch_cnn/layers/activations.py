"""Keras's activation functions and activation layers, as TensorFlow computes them.

``get_activation(identifier, spec)`` turns a Keras activation identifier (a name
such as ``"relu"``, a serialized function or activation-layer dict, or that
dict as a JSON string) into a torch callable, or ``None`` for ``"linear"``.
Where torch's native function computes the same formula it is used as is; where
TensorFlow computes something else it is transcribed (keras/src/activations/
activations.py, keras/src/backend/tensorflow/nn.py and the TF ops they call):

* ``hard_sigmoid`` is Keras 3's ``relu6(x + 3) / 6`` (Keras 2, tf_keras, computes
  ``clip(0.2 x + 0.5, 0, 1)``: a tf_keras model using it differs); ``hard_silu`` is
  ``x * hard_sigmoid(x)``.
* ``leaky_relu``: TF's ``LeakyRelu`` op takes ``alpha`` as a float32 attribute,
  so Keras computes with ``float32(negative_slope)`` even in float64. The
  activation function defaults to 0.2; the ``LeakyReLU`` layer to 0.3; torch to 0.01.
* ``gelu``: the activation function defaults to the exact (erf) form; the
  ``keras.ops.gelu`` op to the tanh approximation. TF's float64 ``gelu`` uses
  float32-rounded constants (``1/sqrt(2)``, ``0.044715``), transcribed here for
  float64; float32 uses torch's native ``F.gelu`` (within 1.1e-6 of TF).
* ``softplus``: TF returns ``x`` above ``-log(eps) - 2`` (13.9 in float32, 34.0
  in float64); torch's default threshold is 20.
* ``softmax``/``log_softmax`` act on Keras's last axis: the channel dim 1 of an
  NCHW map, the last dim otherwise.

Nothing here works in place: outputs are always new tensors.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torch_cnn.layers.spec import TensorSpec

__all__ = [
    "KERAS_LEAKY_RELU_FN_SLOPE",
    "KERAS_LEAKY_RELU_LAYER_SLOPE",
    "ActivationFn",
    "KerasActivation",
    "KerasReLU",
    "PReLU",
    "Softmax",
    "UnsupportedActivation",
    "activation_defaults",
    "activation_function",
    "activation_name",
    "activation_names",
    "elu",
    "gelu",
    "get_activation",
    "hard_sigmoid",
    "hard_silu",
    "keras_relu",
    "leaky_relu",
    "relu_function",
    "softmax_function",
    "softplus",
]

ActivationFn = Callable[[Tensor], Tensor]

# Keras's default slopes, all different from torch's nn.LeakyReLU (0.01).
KERAS_LEAKY_RELU_FN_SLOPE = 0.2  # keras.activations.leaky_relu, keras.ops.leaky_relu
KERAS_LEAKY_RELU_LAYER_SLOPE = 0.3  # keras.layers.LeakyReLU

_SQRT1_2_F32 = float(np.float32(0.7071067811865476))  # TF casts 1/sqrt(2) through float32
_GELU_COEFF_F32 = float(np.float32(0.044715))  # likewise the cubic coefficient
_SQRT_2_OVER_PI = 0.7978845608028654
# TF's softplus returns x above -(log(eps) + 2) (tensorflow/core/kernels/softplus_op.h).
_SOFTPLUS_THRESHOLD = {
    dt: -(math.log(torch.finfo(dt).eps) + 2.0)
    for dt in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
}


class UnsupportedActivation(ValueError):
    """A Keras activation identifier torch_cnn does not know."""


def _f32(value: float) -> float:
    """``value`` rounded to float32, as TF passes float attributes to its kernels."""
    return float(np.float32(value))


# --- the functions --------------------------------------------------------------------------


def hard_sigmoid(x: Tensor) -> Tensor:
    """Keras 3's ``hard_sigmoid``: ``relu6(x + 3) / 6`` (keras/src/backend/tensorflow/nn.py).

    >>> hard_sigmoid(torch.tensor([-4.0, 0.0, 1.5, 4.0]))
    tensor([0.0000, 0.5000, 0.7500, 1.0000])
    """
    return F.relu6(x + 3.0) / 6.0


def hard_sigmoid_keras2(x: Tensor) -> Tensor:
    """Keras 2's (tf_keras) ``hard_sigmoid``: ``clip(0.2 x + 0.5, 0, 1)``.

    >>> hard_sigmoid_keras2(torch.tensor([-4.0, 0.0, 1.5, 4.0]))
    tensor([0.0000, 0.5000, 0.8000, 1.0000])
    """
    return torch.clamp(x * 0.2 + 0.5, 0.0, 1.0)


def hard_silu(x: Tensor) -> Tensor:
    """Keras's ``hard_silu``/``hard_swish``: ``x * hard_sigmoid(x)`` (torch's hardswish rounds differently)."""
    return x * hard_sigmoid(x)


def softplus(x: Tensor) -> Tensor:
    """TF's ``softplus``: ``x`` above ``-(log(eps) + 2)``, else ``log1p(exp(x))``."""
    return F.softplus(x, threshold=_SOFTPLUS_THRESHOLD.get(x.dtype, 20.0))


def gelu(x: Tensor, approximate: bool = False) -> Tensor:
    """TF's ``gelu``: erf form, or the tanh approximation with ``approximate=True``.

    float64 transcribes TF's formula with its float32-rounded constants (1e-12 parity);
    other dtypes use torch's native kernel, within 1.1e-6 of TF in float32.
    """
    if x.dtype != torch.float64:
        y: Tensor = F.gelu(x, approximate="tanh" if approximate else "none")
        return y
    if approximate:
        inner = _SQRT_2_OVER_PI * (x + _GELU_COEFF_F32 * torch.pow(x, 3))
        return 0.5 * x * (1.0 + torch.tanh(inner))
    erfc: Tensor = torch.special.erfc(x * -_SQRT1_2_F32)
    return 0.5 * x * erfc


def leaky_relu(x: Tensor, negative_slope: float = KERAS_LEAKY_RELU_FN_SLOPE) -> Tensor:
    """TF's ``leaky_relu``: the slope rounded to float32 first (an op attribute), any dtype."""
    return F.leaky_relu(x, _f32(negative_slope))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """Keras's ``elu``: ``x`` for ``x > 0``, ``alpha * expm1(x)`` otherwise."""
    return F.elu(x, alpha)


def keras_relu(
    x: Tensor, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> Tensor:
    """Keras's ``relu`` with every option, step for step (keras/src/activations/activations.py).

    ``x`` above ``threshold`` (clipped at ``max_value``), else
    ``negative_slope * (x - threshold)``.

    >>> keras_relu(torch.tensor([-10.0, -5.0, 0.0, 5.0, 10.0]), threshold=5.0)
    tensor([ 0.,  0.,  0.,  0., 10.])
    """
    if negative_slope != 0.0:
        if max_value is None and threshold == 0:
            return leaky_relu(x, negative_slope)
        negative_part = F.relu(-x + threshold) if threshold != 0 else F.relu(-x)
    clip_max = max_value is not None
    if threshold != 0:
        y = torch.where(x > threshold, x, 0.0)
    elif max_value == 6:
        y = F.relu6(x)
        clip_max = False
    else:
        y = F.relu(x)
    if clip_max:
        assert max_value is not None
        y = torch.clamp(y, 0.0, max_value)
    if negative_slope != 0.0:
        y = y - negative_slope * negative_part
    return y


def relu_function(
    negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> ActivationFn:
    """``keras_relu`` with its options fixed, as the fastest native function that computes it."""
    if negative_slope == 0.0 and threshold == 0:
        if max_value is None:
            return F.relu
        if max_value == 6:
            return F.relu6
        return partial(torch.clamp, min=0.0, max=max_value)  # relu, then clip(0, max_value)
    if max_value is None and threshold == 0:
        return partial(F.leaky_relu, negative_slope=_f32(negative_slope))
    return partial(
        keras_relu, negative_slope=negative_slope, max_value=max_value, threshold=threshold
    )


def _softmax_dims(spec: TensorSpec, axis: int | Sequence[int]) -> tuple[int, ...]:
    axes = [axis] if isinstance(axis, int) else list(axis)
    return tuple(spec.torch_axis(int(a)) for a in axes)


def _softmax_nd(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """Keras's softmax over several axes: ``exp(x - logsumexp(x, axes))``."""
    return torch.exp(x - torch.logsumexp(x, dim=dims, keepdim=True))


def softmax_function(spec: TensorSpec, axis: int | Sequence[int] = -1) -> ActivationFn:
    """Keras's softmax over ``axis`` (Keras numbering, batch = 0) of a tensor described by ``spec``."""
    dims = _softmax_dims(spec, axis)
    if len(dims) == 1:
        return partial(F.softmax, dim=dims[0])
    return partial(_softmax_nd, dims=dims)


def _log_softmax_function(spec: TensorSpec, axis: int = -1) -> ActivationFn:
    return partial(F.log_softmax, dim=spec.torch_axis(int(axis)))


def _celu(x: Tensor, alpha: float = 1.0) -> Tensor:
    # tf.maximum(x, 0) + alpha * expm1(tf.minimum(x, 0) / alpha)
    return torch.clamp_min(x, 0.0) + alpha * torch.expm1(torch.clamp_max(x, 0.0) / alpha)


def _sparse_plus(x: Tensor) -> Tensor:
    return torch.where(x <= -1, 0.0, torch.where(x < 1, 0.25 * torch.pow(x + 1, 2), x))


def _sparse_sigmoid(x: Tensor) -> Tensor:
    return torch.where(x <= -1, 0.0, torch.where(x >= 1, 1.0, 0.5 * (x + 1)))


def _squareplus(x: Tensor, b: float = 4.0) -> Tensor:
    return (x + torch.sqrt(torch.square(x) + b)) / 2


def _soft_shrink(x: Tensor, threshold: float = 0.5) -> Tensor:
    return torch.where(
        x > threshold, x - threshold, torch.where(x < -threshold, x + threshold, 0.0)
    )


def _hard_shrink(x: Tensor, threshold: float = 0.5) -> Tensor:
    return torch.where(torch.abs(x) > threshold, x, 0.0)


def _mish(x: Tensor) -> Tensor:
    return x * torch.tanh(softplus(x))  # keras.activations.Mish, with TF's softplus


def _tanh_shrink(x: Tensor) -> Tensor:
    return x - torch.tanh(x)


# Name → factory(spec, **options). Options are those of the Keras function (axis, alpha, ...).
_Factory = Callable[..., ActivationFn]


def _fixed(fn: ActivationFn) -> _Factory:
    def factory(spec: TensorSpec) -> ActivationFn:
        return fn

    return factory


_FACTORIES: dict[str, _Factory] = {
    "relu": lambda spec, negative_slope=0.0, max_value=None, threshold=0.0: relu_function(
        negative_slope, max_value, threshold
    ),
    "relu6": _fixed(F.relu6),
    "leaky_relu": lambda spec, negative_slope=KERAS_LEAKY_RELU_FN_SLOPE: partial(
        F.leaky_relu, negative_slope=_f32(negative_slope)
    ),
    "sigmoid": _fixed(torch.sigmoid),
    "hard_sigmoid": _fixed(hard_sigmoid),
    "hard_silu": _fixed(hard_silu),
    "silu": _fixed(F.silu),
    "tanh": _fixed(torch.tanh),
    "softmax": lambda spec, axis=-1: softmax_function(spec, axis),
    "log_softmax": lambda spec, axis=-1: _log_softmax_function(spec, axis),
    "elu": lambda spec, alpha=1.0: F.elu if alpha == 1.0 else partial(elu, alpha=alpha),
    "selu": _fixed(F.selu),
    "gelu": lambda spec, approximate=False: partial(gelu, approximate=bool(approximate)),
    "softplus": _fixed(softplus),
    "softsign": _fixed(F.softsign),
    "exponential": _fixed(torch.exp),
    "mish": _fixed(_mish),
    "celu": lambda spec, alpha=1.0: partial(_celu, alpha=alpha),
    "log_sigmoid": _fixed(F.logsigmoid),
    "hard_tanh": _fixed(F.hardtanh),
    "tanh_shrink": _fixed(_tanh_shrink),
    "soft_shrink": lambda spec, threshold=0.5: partial(_soft_shrink, threshold=threshold),
    "hard_shrink": lambda spec, threshold=0.5: partial(_hard_shrink, threshold=threshold),
    "sparse_plus": _fixed(_sparse_plus),
    "sparse_sigmoid": _fixed(_sparse_sigmoid),
    "squareplus": lambda spec, b=4.0: partial(_squareplus, b=b),
}
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}
# What a name means in a file written by Keras 2 where that differs (not Keras names
# of their own: the converter renames a Keras 2 model's activations to these).
_KERAS2_FACTORIES: dict[str, _Factory] = {"hard_sigmoid_keras2": _fixed(hard_sigmoid_keras2)}


def activation_names() -> list[str]:
    """The Keras activation names ``get_activation`` accepts, sorted (``linear`` included)."""
    return sorted([*_FACTORIES, *_ALIASES, "linear"])


def activation_defaults(name: str) -> dict[str, Any]:
    """The options of the Keras activation function ``name`` and their defaults.

    >>> activation_defaults("gelu")
    {'approximate': False}
    """
    factory = _FACTORIES.get(_ALIASES.get(name, name))
    if factory is None:
        return {}
    params = list(inspect.signature(factory).parameters.values())[1:]  # after spec
    return {p.name: p.default for p in params}


def activation_function(name: str, spec: TensorSpec, **options: Any) -> ActivationFn | None:
    """The Keras activation function ``name`` with keyword ``options`` (``alpha``, ``axis``...).

    >>> activation_function("elu", TensorSpec((3,)), alpha=0.5)(torch.tensor([-1.0, 2.0]))
    tensor([-0.3161,  2.0000])
    """
    name = _ALIASES.get(name, name)
    if name == "linear":
        return None
    factory = _FACTORIES.get(name) or _KERAS2_FACTORIES.get(name)
    if factory is None:
        raise UnsupportedActivation(
            f"Keras activation {name!r} is not supported. Supported: "
            f"{', '.join(activation_names())}"
        )
    try:
        return factory(spec, **options)
    except TypeError as exc:  # an option the Keras function does not take
        raise UnsupportedActivation(
            f"Keras activation {name!r} with options {options}: {exc}"
        ) from None


# Activation *layers* that Keras serializes as an activation (``Dense(activation=LeakyReLU())``):
# class name → (function name, {config key: option}, {option: Keras's layer default}).
_LAYER_ACTIVATIONS: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "ReLU": (
        "relu",
        {"negative_slope": "negative_slope", "max_value": "max_value", "threshold": "threshold"},
        {},
    ),
    "LeakyReLU": (
        "leaky_relu",
        {"negative_slope": "negative_slope", "alpha": "negative_slope"},  # alpha: Keras 2
        {"negative_slope": KERAS_LEAKY_RELU_LAYER_SLOPE},
    ),
    "ELU": ("elu", {"alpha": "alpha"}, {}),
    "Softmax": ("softmax", {"axis": "axis"}, {}),
}
_IGNORED_LAYER_KEYS = {"name", "trainable", "dtype"}


def _from_dict(identifier: Mapping[str, Any], spec: TensorSpec) -> ActivationFn | None:
    class_name = identifier.get("class_name")
    config = identifier.get("config")
    module = identifier.get("module")
    if class_name == "function":  # a serialized keras.activations function
        registered = identifier.get("registered_name")
        builtin = module is None or str(module).startswith(("keras", "builtins"))
        if not isinstance(config, str) or not builtin or registered not in (None, config):
            raise UnsupportedActivation(
                f"custom Keras activation {identifier!r} is not supported; torch_cnn converts "
                f"the built-in activations: {', '.join(activation_names())}"
            )
        return activation_function(config, spec)
    if class_name == "Activation" and isinstance(config, Mapping):
        return get_activation(config.get("activation"), spec)
    if class_name in _LAYER_ACTIVATIONS and isinstance(config, Mapping):
        fn, keys, defaults = _LAYER_ACTIVATIONS[class_name]
        options = dict(defaults)
        for key, value in config.items():
            if key in keys:
                options[keys[key]] = value
            elif key not in _IGNORED_LAYER_KEYS:
                raise UnsupportedActivation(
                    f"Keras activation layer {class_name} option {key}={value!r} is not supported"
                )
        return activation_function(fn, spec, **options)
    raise UnsupportedActivation(
        f"Keras activation {identifier!r} is not supported. Supported: the names "
        f"{', '.join(activation_names())}, serialized functions of those names, and the "
        f"layers {', '.join(sorted(_LAYER_ACTIVATIONS))}, Activation"
    )


def get_activation(identifier: Any, spec: TensorSpec) -> ActivationFn | None:
    """The torch function for a Keras activation identifier, or ``None`` for ``linear``.

    ``identifier`` is what a Keras config stores: ``None``, a name (``"relu"``,
    ``"swish"``), a serialized function dict, an activation-layer dict (``LeakyReLU``,
    ``ReLU``, ``ELU``, ``Softmax``, ``Activation``) or such a dict as a JSON string
    (how converters pass it by name). ``spec`` describes the tensor it acts on
    (softmax's axis). Unknown identifiers raise ``UnsupportedActivation``.

    >>> get_activation("linear", TensorSpec((10,))) is None
    True
    >>> f = get_activation("softmax", TensorSpec((4, 4, 3)))  # channels: torch dim 1
    >>> f(torch.zeros(1, 3, 4, 4)).sum(dim=1).unique()
    tensor([1.])
    """
    if identifier is None:
        return None
    if isinstance(identifier, str):
        if identifier.startswith("{"):
            try:
                decoded = json.loads(identifier)
            except json.JSONDecodeError as exc:
                raise UnsupportedActivation(
                    f"activation {identifier!r} is not valid JSON: {exc}"
                ) from None
            return _from_dict(decoded, spec)
        return activation_function(identifier, spec)
    if isinstance(identifier, Mapping):
        return _from_dict(identifier, spec)
    raise UnsupportedActivation(
        f"a Keras activation identifier is a name or a serialized dict. Received: {identifier!r}"
    )


def activation_name(identifier: Any, spec: TensorSpec) -> str:
    """``identifier`` as the string a ``Converted`` carries: a name, or canonical JSON for a dict.

    Checked on the way (an unsupported identifier raises ``UnsupportedActivation``).
    """
    get_activation(identifier, spec)
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        return _ALIASES.get(identifier, identifier)
    if isinstance(identifier, Mapping):
        if identifier.get("class_name") == "function":
            name = str(identifier.get("config"))
            return _ALIASES.get(name, name)
        return json.dumps(identifier, sort_keys=True)
    raise UnsupportedActivation(f"activation {identifier!r}")  # unreachable: checked above


# --- modules ----------------------------------------------------------------------------------


class KerasActivation(nn.Module):
    """A Keras activation as a module (``keras.ops.leaky_relu(x, 0.1)``, ``ReLU(threshold=1)``).

    ``fn`` comes from ``get_activation``/``relu_function``; ``name`` is shown in the repr.
    """

    def __init__(self, fn: ActivationFn, name: str) -> None:
        super().__init__()
        self.fn = fn
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


class KerasReLU(KerasActivation):
    """Keras's ``ReLU`` layer (keras/src/layers/activations/relu.py): ``keras_relu`` with its options.

    The converter uses torch's ``nn.ReLU``/``nn.ReLU6``/``nn.LeakyReLU`` where the
    options reduce to them; this module covers the rest (``threshold``, ``max_value``
    with ``negative_slope``).
    """

    def __init__(
        self, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
    ) -> None:
        super().__init__(
            relu_function(negative_slope, max_value, threshold),
            f"negative_slope={negative_slope}, max_value={max_value}, threshold={threshold}",
        )
        self.negative_slope = negative_slope
        self.max_value = max_value
        self.threshold = threshold


class Softmax(nn.Module):
    """Keras's ``Softmax`` over several axes: ``exp(x - logsumexp(x, dims))`` (torch dims).

    One axis converts to torch's ``nn.Softmax(dim)``; this is the multi-axis case
    (keras/src/layers/activations/softmax.py).
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        self.dims = tuple(int(d) for d in dims)

    def forward(self, x: Tensor) -> Tensor:
        return _softmax_nd(x, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class PReLU(nn.Module):
    """Keras's ``PReLU`` (keras/src/layers/activations/prelu.py): ``x`` if ``x > 0`` else ``alpha * x``.

    ``weight`` is Keras's ``alpha`` in torch layout: ``(C, H, W)`` for a map,
    ``(C, 1, 1)`` with ``shared_axes=[1, 2]``, the Keras shape otherwise. Keras
    computes ``relu(x) - alpha * relu(-x)``; the negations are exact, so the values are
    those of ``where(x > 0, x, alpha * x)``, which is one native kernel (``F.prelu``)
    when ``alpha`` holds one value per channel of dim 1.
    """

    def __init__(
        self,
        shape: Sequence[int],
        *,
        channel_dim: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(tuple(shape), device=device, dtype=dtype))
        # F.prelu takes a 1-D weight over dim 1: usable when alpha varies along that dim only.
        self.channel_dim = channel_dim

    def forward(self, x: Tensor) -> Tensor:
        if self.channel_dim == 1:
            return F.prelu(x, self.weight.reshape(-1))
        return torch.where(x > 0, x, self.weight * x)

    def extra_repr(self) -> str:
        return f"alpha={tuple(self.weight.shape)}"
