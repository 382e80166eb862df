"""Build a ``KerasGraph`` from a parsed Keras model: one registered converter per layer call.

Everything is checked before anything is built: every layer's class must have a
converter (the error names all that do not, with the supported list); then each
call is built in execution order with the shapes Keras would compute. A
converter's own error is re-raised naming the layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from torch_cnn.convert.graph import GraphCall, ModelGraph, Ref, parse_model
from torch_cnn.convert.registry import (
    BuildContext,
    ConversionError,
    Converted,
    get_converter,
    supported_layers,
)
from torch_cnn.layers.activations import get_activation
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import GraphNode, KerasGraph, sanitize_name
from torch_cnn.porting.keras_config import is_op_module

# Activation names a Keras 2 (tf.keras) file uses for another function than Keras 3's.
KERAS2_ACTIVATIONS = {"hard_sigmoid": "hard_sigmoid_keras2"}


def check_supported(graph: ModelGraph, where: str) -> None:
    """Every call's class has a converter (nested models included), or one error naming the
    unsupported classes with the layers that use them, and the supported list."""
    missing: dict[str, list[str]] = {}
    first: ConversionError | None = None
    for gc in _all_calls(graph, where):
        try:
            get_converter(gc.call)
        except ConversionError as exc:
            first = first or exc
            label = (
                f"{gc.call.module}.{gc.call.class_name}"
                if is_op_module(gc.call.module)
                else gc.call.class_name
            )
            missing.setdefault(label, []).append(gc.call.name)
    if first is None:
        return
    if len(missing) == 1 and len(next(iter(missing.values()))) == 1:
        raise ConversionError(f"{where}: {first}")
    parts = []
    for cls, names in missing.items():
        shown = ", ".join(repr(n) for n in names[:3]) + (", ..." if len(names) > 3 else "")
        parts.append(f"{cls} ({len(names)} layer{'s' if len(names) > 1 else ''}: {shown})")
    n = sum(len(v) for v in missing.values())
    raise ConversionError(
        f"{where}: {n} layers cannot be converted, of classes without a converter: "
        f"{'; '.join(parts)}. Supported layers: {', '.join(supported_layers())}. Register a "
        "converter with torch_cnn.register_keras_layer(...) to add one."
    )


def _all_calls(graph: ModelGraph, where: str) -> Iterator[GraphCall]:
    for gc in graph.calls:
        if gc.is_model:
            yield from _all_calls(parse_model(gc.entry, where), where)
        else:
            yield gc


def _flatten_orders(graph: ModelGraph) -> dict[str, str]:
    """For each Flatten layer: "torch" when all its readers are Dense layers (through layers
    that keep the feature order) and it is not the model's output; else "keras"."""
    readers: dict[Ref, list[GraphCall]] = {}
    for gc in graph.calls:
        for r in gc.inputs:
            readers.setdefault(r, []).append(gc)

    def only_dense(ref: Ref) -> bool:
        if ref == graph.output or not readers.get(ref):
            return False
        for gc in readers[ref]:
            if gc.is_model:
                return False
            conv = get_converter(gc.call)
            if conv.reads_flatten_order:
                continue
            if not (conv.keeps_feature_order and len(gc.inputs) == 1 and only_dense(gc.output)):
                return False
        return True

    return {
        gc.call.name: "torch" if only_dense(gc.output) else "keras"
        for gc in graph.calls
        if gc.call.class_name == "Flatten" and not gc.is_model
    }


def build_model(
    graph: ModelGraph,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    where: str = "",
    top: bool = True,
    keras_version: str | None = None,
) -> KerasGraph:
    """The ``KerasGraph`` of ``graph``; its parameters are freshly initialised (torch's
    defaults): load Keras weights into it with ``torch_cnn.load_keras_weights``."""
    if top:
        check_supported(graph, where)
    orders = _flatten_orders(graph)
    specs: dict[Ref, TensorSpec] = {graph.input: TensorSpec(graph.input_shape)}
    index: dict[Ref, int] = {graph.input: 0}
    attrs: dict[str, str] = {}
    taken: set[str] = set()
    modules: dict[str, nn.Module] = {}
    nodes: list[GraphNode] = []
    activations = []
    for gc in graph.calls:
        call = gc.call
        in_specs = [specs[r] for r in gc.inputs]
        first_use = call.name not in attrs
        if first_use:
            attrs[call.name] = sanitize_name(call.name, taken)
        attr = attrs[call.name]
        order = orders.get(call.name, "keras")
        ctx = BuildContext(device, dtype, order, where, keras_version)  # type: ignore[arg-type]
        converted = _convert(gc, in_specs, ctx, modules.get(attr))
        if first_use:
            modules[attr] = converted.module
        trainable = bool(call.config.get("trainable", True))
        if not trainable:
            converted.module.requires_grad_(False)
        if ctx.keras2 and converted.activation in KERAS2_ACTIVATIONS:
            converted.activation = KERAS2_ACTIVATIONS[converted.activation]
        try:
            act = get_activation(converted.activation, converted.output)
        except ValueError as exc:
            raise ConversionError(f"{where}: Keras layer {call.label}: {exc}") from exc
        nodes.append(
            GraphNode(
                name=call.name,
                class_name=call.class_name,
                attr=attr,
                inputs=tuple(index[r] for r in gc.inputs),
                output=converted.output,
                weights=converted.weights if first_use else (),
                activation=converted.activation,
                trainable=trainable,
                config=call.config,
            )
        )
        activations.append(act)
        specs[gc.output] = converted.output
        index[gc.output] = len(nodes)
    return KerasGraph(
        graph.name, TensorSpec(graph.input_shape), nodes, modules, activations,
        output=index[graph.output], keras_config=graph.config, check_inputs=top,
        input_name=_input_name(graph), keras_version=keras_version,
    )  # fmt: skip


def _input_name(graph: ModelGraph) -> str:
    """The model's InputLayer name (a Sequential built without one has Keras's default)."""
    for entry in graph.entries:
        if entry.get("class_name") == "InputLayer":
            cfg = entry.get("config") or {}
            return str(cfg.get("name") or entry.get("name") or "input_layer")
    return "input_layer"


def _convert(
    gc: GraphCall, in_specs: list[TensorSpec], ctx: BuildContext, existing: nn.Module | None
) -> Converted:
    call = gc.call
    where = ctx.where
    if gc.is_model:
        inner = build_model(
            parse_model(gc.entry, where), device=ctx.device, dtype=ctx.dtype, where=where,
            top=False, keras_version=ctx.keras_version,
        )  # fmt: skip
        want = inner.input_spec
        if len(in_specs) != 1 or not _fits(in_specs[0], want):
            got = ", ".join(s.keras_str() for s in in_specs)
            raise ConversionError(
                f"{where}: nested model {call.label} takes {want.keras_str()}; it receives {got}"
            )
        return Converted(existing or inner, inner.output_spec)
    conv = get_converter(call)
    try:
        converted = conv.build(call, in_specs, ctx)
    except ConversionError as exc:
        raise ConversionError(f"{where}: {exc}") from exc
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise ConversionError(
            f"{where}: Keras layer {call.label} could not be converted "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if existing is not None:  # a shared layer: one module, called again
        converted = dataclasses.replace(converted, module=existing)
    if conv.keeps_feature_order and in_specs and in_specs[0].chw is not None:
        converted.output = dataclasses.replace(converted.output, chw=in_specs[0].chw)
    return converted


def _fits(got: TensorSpec, want: TensorSpec) -> bool:
    return len(got.shape) == len(want.shape) and all(
        w is None or g is None or g == w for g, w in zip(got.shape, want.shape, strict=True)
    )


def from_config(
    config: Mapping[str, Any],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    where: str = "Keras config",
    keras_version: str | None = None,
) -> KerasGraph:
    """A ``KerasGraph`` built from a model config (``model.get_config()`` wrapped as Keras
    serialises it: ``{"class_name": "Functional", "config": {...}}``); its weights are torch's
    fresh initialisation until Keras weights are loaded into it."""
    graph = parse_model(config, where)
    return build_model(graph, device=device, dtype=dtype, where=where, keras_version=keras_version)
