"""The registry of Keras layer converters: one builder per Keras class (onnx2torch style).

A converter turns one Keras layer call into a native torch module::

    @register_keras_layer("Conv2D")
    def conv2d(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
        cfg = call.config
        ...
        return Converted(module, output_spec, weights=(WeightMap(...), ...), activation="relu")

``call`` is the layer as the Keras config records it (class, config, call
arguments), ``inputs`` describe the tensors it receives (Keras shapes; maps
are NCHW in torch, see ``torch_cnn.models.graph``) and ``ctx`` carries the
device and dtype to build with. The builder returns the module, the spec of
what it outputs, the ``WeightMap`` rows of its Keras variables (Keras order)
and the activation Keras fuses into the layer. Builders read configs only;
they never import or evaluate anything a config names.

The built-in converters register through the same decorator, so a user adds a
layer exactly as torch_cnn adds its own::

    torch_cnn.register_keras_layer("MyScale")(my_builder)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import WeightMap
from torch_cnn.porting.keras_config import is_op_module
from torch_cnn.porting.records import PortingError

__all__ = [
    "BuildContext",
    "ConversionError",
    "Converted",
    "KerasCall",
    "LayerConverter",
    "TensorArg",
    "get_converter",
    "register_keras_layer",
    "supported_layers",
]


class ConversionError(PortingError):
    """A Keras model that torch_cnn cannot convert; nothing was built."""


@dataclass(frozen=True)
class TensorArg:
    """Stands for the ``index``-th input tensor among a call's arguments."""

    index: int


@dataclass(frozen=True)
class KerasCall:
    """One call of a Keras layer (or op) as the model config records it.

    ``args``/``kwargs`` are the call's arguments with ``TensorArg(i)`` where
    ``inputs[i]`` goes: ``x + 3.0`` is ``args=(TensorArg(0), 3.0)`` and a
    merge of two tensors is ``args=([TensorArg(0), TensorArg(1)],)``.
    ``module`` is Keras 3's ``module`` key ("keras.layers",
    "keras.src.ops.numpy"); None where the file has none (Keras 2).
    """

    name: str
    class_name: str
    config: Mapping[str, Any]
    module: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``'conv2d_1' (Conv2D)``: how errors name the layer."""
        return f"{self.name!r} ({self.class_name})"

    def error(self, message: str) -> ConversionError:
        """A ``ConversionError`` naming this layer."""
        return ConversionError(f"Keras layer {self.label}: {message}")


@dataclass(frozen=True)
class BuildContext:
    """What a builder needs besides the layer: where and in which dtype to build.

    ``flatten_order`` is for ``Flatten`` only: "torch" when every reader of its
    output is a Dense layer (through layers that keep the feature order), so
    it may flatten NCHW and let the Dense permute its kernel rows; "keras"
    otherwise (flatten in Keras's (H, W, C) order).
    """

    device: torch.device | str | None = None
    dtype: torch.dtype | None = None
    flatten_order: Literal["keras", "torch"] = "keras"
    where: str = ""  # the source, for messages
    keras_version: str | None = None  # of the Keras that wrote the file, when it says

    @property
    def keras2(self) -> bool:
        """Written by Keras 2 (tf.keras / tf_keras), whose arithmetic differs in places."""
        return bool(self.keras_version) and str(self.keras_version).split(".")[0] == "2"

    @property
    def factory(self) -> dict[str, Any]:
        """``device=`` and ``dtype=`` for a torch module constructor."""
        return {"device": self.device, "dtype": self.dtype}


@dataclass
class Converted:
    """What a builder returns for one Keras layer call."""

    module: nn.Module
    output: TensorSpec
    weights: tuple[WeightMap, ...] = ()
    activation: str = "linear"  # the activation Keras fuses into the layer, by name


Builder = Callable[[KerasCall, Sequence[TensorSpec], BuildContext], Converted]


@dataclass(frozen=True)
class LayerConverter:
    """A registered converter and what the graph builder may assume about it."""

    class_name: str
    build: Builder
    op: bool  # a Keras op node (module keras.src.ops.*), not a layer
    keeps_feature_order: bool  # elementwise per feature: a torch-order Flatten may pass through
    reads_flatten_order: bool  # folds a torch-order Flatten into its weights (Dense)


_LAYERS: dict[str, LayerConverter] = {}
_OPS: dict[str, LayerConverter] = {}


def register_keras_layer(
    class_name: str,
    *,
    op: bool = False,
    keeps_feature_order: bool = False,
    reads_flatten_order: bool = False,
    replace: bool = False,
) -> Callable[[Builder], Builder]:
    """Register ``builder`` for the Keras class ``class_name``; a duplicate raises unless ``replace``.

    ``op=True`` registers a Keras op recorded as a graph node (config entries whose
    ``module`` is ``keras.src.ops.*``, e.g. ``Add`` for ``x + 3.0``), kept apart from
    the layer of the same class name (the ``Add`` merge layer).
    """
    if not class_name or not isinstance(class_name, str):
        raise ValueError(f"class_name must be a non-empty string. Received: {class_name!r}")
    table = _OPS if op else _LAYERS

    def wrap(build: Builder) -> Builder:
        if class_name in table and not replace:
            raise ValueError(
                f"a converter for Keras {'op' if op else 'layer'} {class_name!r} is already "
                "registered; pass replace=True to override it"
            )
        table[class_name] = LayerConverter(
            class_name, build, op, keeps_feature_order, reads_flatten_order
        )
        return build

    return wrap


def supported_layers() -> list[str]:
    """The Keras layer classes with a registered converter, sorted."""
    return sorted(_LAYERS)


def supported_ops() -> list[str]:
    """The Keras ops (graph nodes of module ``keras.src.ops.*``) with a converter, sorted."""
    return sorted(_OPS)


def get_converter(call: KerasCall) -> LayerConverter:
    """The converter for ``call``, or a ``ConversionError`` naming it and the supported list.

    A legacy ``.h5`` written by Keras 3 drops the ``module`` key, so an op node (``x + 3.0``,
    class ``Add``) looks like the merge layer of the same name: a merge layer is called on
    one list of tensors, an op on its operands, and a class that only exists as an op
    (``Relu6``, ``TrueDivide``) can only be one.
    """
    op = is_op_module(call.module)
    if call.module is None and call.class_name in _OPS:
        merge_call = len(call.args) == 1 and isinstance(call.args[0], list)
        op = call.class_name not in _LAYERS or not merge_call
    found = (_OPS if op else _LAYERS).get(call.class_name)
    if found is None:
        what = f"Keras op {call.module}.{call.class_name}" if op else "layer class"
        supported = ", ".join(supported_ops() if op else supported_layers())
        raise ConversionError(
            f"Keras layer {call.label}: {what} {call.class_name!r} is not supported. "
            f"Supported: {supported}. Register a converter with "
            "torch_cnn.register_keras_layer(...) to add it."
        )
    return found


def pair(call: KerasCall, key: str, default: Any) -> tuple[int, int]:
    """An int-or-pair config entry (``kernel_size``, ``strides``) as a pair of ints."""
    value = call.config.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return (int(value[0]), int(value[1]))
    raise call.error(f"{key} must be an int or a pair of ints. Received: {key}={value!r}")


def single_input(call: KerasCall, inputs: Sequence[TensorSpec]) -> TensorSpec:
    """The one input a layer takes; a ``ConversionError`` otherwise."""
    if len(inputs) != 1:
        raise call.error(f"expected one input tensor; received {len(inputs)}")
    return inputs[0]


def single_map(
    call: KerasCall, inputs: Sequence[TensorSpec]
) -> tuple[TensorSpec, int | None, int | None, int]:
    """The one channels-last image map a layer takes, with a known channel count:
    ``(spec, H, W, C)``; a ``ConversionError`` otherwise."""
    channels_last(call)
    spec = single_input(call, inputs)
    if not spec.is_map or spec.shape[2] is None:
        raise call.error(
            f"expects an image map (batch, height, width, channels) with known channels; "
            f"received {spec.keras_str()}"
        )
    h, w, c = spec.shape
    assert c is not None
    return spec, h, w, c


def channels_last(call: KerasCall) -> None:
    """Refuse ``data_format='channels_first'`` (torch_cnn converts channels-last models)."""
    fmt = call.config.get("data_format", "channels_last")
    if fmt not in (None, "channels_last"):
        raise call.error(
            f"data_format={fmt!r} is not supported; torch_cnn converts channels_last models"
        )
