"""A Keras model config (Keras 3 or Keras 2) as a graph of layer calls, in execution order.

Only the config is read: JSON in, plain data out; nothing a config names is
imported or evaluated (a ``Lambda``'s code stays text). What the two Keras
generations write differently, and how it is read here:

- Functional ``inbound_nodes``: Keras 3 writes one ``{"args": [...], "kwargs":
  {...}}`` per call, tensors as ``{"class_name": "__keras_tensor__", "config":
  {"keras_history": [layer, node, tensor]}}`` anywhere inside the arguments
  (a merge's inputs are a list); Keras 2 writes one list per call of
  ``[layer, node, tensor, kwargs]`` entries (a ``TFOpLambda``'s constant
  operands sit in those kwargs, e.g. ``{"y": 3.0}``).
- Input shapes: ``batch_shape`` (Keras 3) or ``batch_input_shape`` (Keras 2), on
  an ``InputLayer`` or, in a Keras 2 Sequential, on its first layer; a Keras 3
  Sequential may carry ``build_input_shape`` instead.
- Keras ops recorded as graph nodes (``x + 3.0``) have a ``module`` of
  ``keras.src.ops.*``; they are calls like any other but are not layers (they
  hold no weights and take no place among ``model.layers``).
- A model inside a model is a layer whose config holds its own ``layers``; it
  stays one call here and is parsed when it is built. References to a nested
  model's output may count a built-in node first (Keras 2, and Keras 3's
  ``output_layers``): an index one past its calls means its last call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch_cnn.convert.registry import ConversionError, KerasCall, TensorArg
from torch_cnn.porting.keras_config import (
    MODEL_CLASSES,
    entry_name,
    is_model_entry,
)

_TENSOR = "__keras_tensor__"
# Call keyword arguments that carry no computation when None/False (Keras passes them along).
_IGNORED_KWARGS = {"mask": None, "training": None, "name": None}


@dataclass(frozen=True)
class Ref:
    """A tensor of the graph: output ``tensor`` of call ``node`` of layer ``layer``."""

    layer: str
    node: int = 0
    tensor: int = 0


@dataclass(frozen=True)
class GraphCall:
    """One call of a layer: what is called, on which tensors, and the tensor it makes."""

    call: KerasCall
    inputs: tuple[Ref, ...]
    output: Ref
    entry: Mapping[str, Any]  # the layer's whole config entry (a nested model's config)

    @property
    def is_model(self) -> bool:
        return is_model_entry(self.entry)


@dataclass(frozen=True)
class ModelGraph:
    """A Sequential or Functional model with one input and one output, calls in order."""

    name: str
    class_name: str  # "Sequential" or "Functional"
    input: Ref
    input_shape: tuple[int | None, ...]  # per sample, Keras layout
    calls: tuple[GraphCall, ...]
    output: Ref
    entries: tuple[Mapping[str, Any], ...]  # the config's layer entries, in config order
    config: Mapping[str, Any]  # the whole model entry ({"class_name": ..., "config": ...})


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _call(entry: Mapping[str, Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> KerasCall:
    cfg = entry.get("config")
    module = entry.get("module")
    return KerasCall(
        name=entry_name(entry),
        class_name=str(entry.get("class_name")),
        config=cfg if isinstance(cfg, Mapping) else {},
        module=module if isinstance(module, str) else None,
        args=args,
        kwargs={k: v for k, v in kwargs.items() if _IGNORED_KWARGS.get(k, ...) != v},
    )


def parse_model(entry: Mapping[str, Any], where: str = "") -> ModelGraph:
    """The graph of a model config entry (``{"class_name": "Functional", "config": {...}}``)."""
    if not isinstance(entry, Mapping):
        raise ConversionError(f"{where}: the model config is a {type(entry).__name__}, not a dict")
    cls = entry.get("class_name")
    cfg = entry.get("config")
    if cls not in MODEL_CLASSES or not isinstance(cfg, Mapping):
        raise ConversionError(
            f"{where}: the model is a {cls!r}; torch_cnn converts Sequential and Functional "
            "models (a subclassed model has no config to convert)"
        )
    layers = cfg.get("layers")
    if not isinstance(layers, list) or not all(isinstance(e, Mapping) for e in layers):
        raise ConversionError(f"{where}: the {cls} config has no list of layer entries")
    if cls == "Sequential":
        return _parse_sequential(entry, cfg, layers, where)
    return _parse_functional(entry, cfg, layers, where)


def _batch_shape(cfg: Mapping[str, Any]) -> tuple[int | None, ...] | None:
    for key in ("batch_shape", "batch_input_shape"):
        shape = cfg.get(key)
        if isinstance(shape, list) and len(shape) >= 2:
            if not all(d is None or (isinstance(d, int) and d > 0) for d in shape[1:]):
                raise ConversionError(f"{key}={shape!r} is not a shape")
            return tuple(shape[1:])
    return None


def _parse_sequential(
    entry: Mapping[str, Any], cfg: Mapping[str, Any], layers: list[Any], where: str
) -> ModelGraph:
    name = str(cfg.get("name") or "sequential")
    shape = None
    body: list[Mapping[str, Any]] = []
    for e in layers:
        lcfg = e.get("config") if isinstance(e.get("config"), Mapping) else {}
        if e.get("class_name") == "InputLayer":
            if body:
                raise ConversionError(f"{where}: Sequential {name!r} has an InputLayer mid-stack")
            shape = _batch_shape(lcfg)
            continue
        if shape is None and not body:
            shape = _batch_shape(lcfg)  # Keras 2: the first layer's batch_input_shape
        body.append(e)
    if shape is None:
        build = cfg.get("build_input_shape")
        shape = _batch_shape({"batch_shape": build}) if isinstance(build, list) else None
    if shape is None:
        raise ConversionError(
            f"{where}: Sequential {name!r} records no input shape (build it, e.g. with "
            "keras.Input(shape=...) as its first layer, before saving)"
        )
    if not body:
        raise ConversionError(f"{where}: Sequential {name!r} has no layers")
    prev = Ref(f"{name}/input")
    calls = []
    for e in body:
        out = Ref(entry_name(e))
        calls.append(GraphCall(_call(e, (TensorArg(0),), {}), (prev,), out, e))
        prev = out
    return ModelGraph(name, "Sequential", Ref(f"{name}/input"), shape, tuple(calls), prev,
                      tuple(layers), entry)  # fmt: skip


def _tensor_ref(value: Any) -> Ref | None:
    """The ``Ref`` of a Keras 3 ``__keras_tensor__`` argument, else None."""
    if isinstance(value, Mapping) and value.get("class_name") == _TENSOR:
        hist = value.get("config", {}).get("keras_history")
        if isinstance(hist, list) and len(hist) == 3 and isinstance(hist[0], str):
            return Ref(hist[0], int(hist[1]), int(hist[2]))
        raise ConversionError(f"a tensor argument without a keras_history: {_short(value)}")
    return None


def _node_args(node: Any, layer: str) -> tuple[tuple[Any, ...], dict[str, Any], list[Ref]]:
    """``(args, kwargs, input refs)`` of one inbound node, in either Keras format."""
    refs: list[Ref] = []

    def walk(value: Any) -> Any:
        ref = _tensor_ref(value)
        if ref is not None:
            refs.append(ref)
            return TensorArg(len(refs) - 1)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, Mapping):
            return {k: walk(v) for k, v in value.items()}
        return value

    if isinstance(node, Mapping):  # Keras 3
        args = node.get("args", [])
        kwargs = node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, Mapping):
            raise ConversionError(f"layer {layer!r}: an inbound node is malformed: {_short(node)}")
        return tuple(walk(a) for a in args), walk(dict(kwargs)), refs
    if isinstance(node, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        return _keras2_node_args(node, layer, refs)
    raise ConversionError(f"layer {layer!r}: an inbound node is malformed: {_short(node)}")


def _keras2_ref(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) for v in value[1:])
    )


def _keras2_node_args(
    node: list[Any], layer: str, refs: list[Ref]
) -> tuple[tuple[Any, ...], dict[str, Any], list[Ref]]:
    """A Keras 2 call: ``[[layer, node, tensor, kwargs], ...]``. A ``TFOpLambda`` call is one
    entry, not wrapped in a list, whose constant operands are ``["_CONSTANT_VALUE", -1, value,
    kwargs]`` and whose tensor operands may sit in its kwargs as ``[layer, node, tensor]``."""
    items = [node] if node and isinstance(node[0], str) else node
    args: list[Any] = []
    merged: dict[str, Any] = {}
    for item in items:
        if not (isinstance(item, list) and len(item) in (3, 4) and isinstance(item[0], str)):
            raise ConversionError(f"layer {layer!r}: an inbound node is malformed: {item!r}")
        if item[0] == "_CONSTANT_VALUE":
            args.append(item[2])
        else:
            refs.append(Ref(item[0], int(item[1]), int(item[2])))
            args.append(TensorArg(len(refs) - 1))
        if len(item) == 4 and isinstance(item[3], Mapping):
            merged.update(item[3])
    for key, value in merged.items():
        if _keras2_ref(value):
            refs.append(Ref(value[0], int(value[1]), int(value[2])))
            merged[key] = TensorArg(len(refs) - 1)
    first: Any = args[0] if len(args) == 1 else args
    return (first,), merged, refs


def _single_ref(value: Any, what: str, name: str, where: str) -> Ref:
    """``input_layers``/``output_layers``: exactly one ``[layer, node, tensor]``."""
    items = value
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        items = [value]
    if not isinstance(items, list) or len(items) != 1:
        n = len(items) if isinstance(items, list) else "an unreadable number of"
        raise ConversionError(
            f"{where}: model {name!r} has {n} {what}; torch_cnn converts models with one image "
            "input and one output"
        )
    item = items[0]
    if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)):
        raise ConversionError(f"{where}: model {name!r} {what} entry is malformed: {item!r}")
    return Ref(item[0], int(item[1]), int(item[2]))


def _parse_functional(
    entry: Mapping[str, Any], cfg: Mapping[str, Any], layers: list[Any], where: str
) -> ModelGraph:
    name = str(cfg.get("name") or "functional")
    by_name: dict[str, Mapping[str, Any]] = {}
    for e in layers:
        lname = entry_name(e)
        if lname in by_name:
            raise ConversionError(f"{where}: model {name!r} has two layers named {lname!r}")
        by_name[lname] = e
    inp = _single_ref(cfg.get("input_layers"), "inputs", name, where)
    out = _single_ref(cfg.get("output_layers"), "outputs", name, where)
    in_entry = by_name.get(inp.layer)
    if in_entry is None or in_entry.get("class_name") != "InputLayer":
        raise ConversionError(
            f"{where}: model {name!r}: its input {inp.layer!r} is not an InputLayer"
        )
    shape = _batch_shape(in_entry.get("config") or {})
    if shape is None:
        raise ConversionError(f"{where}: InputLayer {inp.layer!r} records no batch shape")
    pending: list[GraphCall] = []
    for e in layers:
        lname = entry_name(e)
        nodes = e.get("inbound_nodes", [])
        if e.get("class_name") == "InputLayer":
            continue
        if not isinstance(nodes, list):
            raise ConversionError(f"{where}: layer {lname!r} has malformed inbound_nodes")
        for k, node in enumerate(nodes):
            args, kwargs, refs = _node_args(node, lname)
            if not refs:
                raise ConversionError(f"{where}: layer {lname!r} is called on no tensor")
            pending.append(GraphCall(_call(e, args, kwargs), tuple(refs), Ref(lname, k), e))
    calls_of: dict[str, list[GraphCall]] = {}
    for gc in pending:
        calls_of.setdefault(gc.output.layer, []).append(gc)

    def resolve(ref: Ref) -> Ref:
        if ref.layer not in by_name:
            raise ConversionError(
                f"{where}: model {name!r} refers to a missing layer {ref.layer!r}"
            )
        if ref.tensor != 0:
            raise ConversionError(
                f"{where}: model {name!r} uses output {ref.tensor} of layer {ref.layer!r}; "
                "torch_cnn converts layers with one output"
            )
        if by_name[ref.layer].get("class_name") == "InputLayer":
            return Ref(ref.layer)
        n = len(calls_of.get(ref.layer, []))
        node = ref.node - 1 if ref.node == n and is_model_entry(by_name[ref.layer]) else ref.node
        if not 0 <= node < n:
            raise ConversionError(
                f"{where}: model {name!r} refers to call {ref.node} of layer {ref.layer!r}, "
                f"which is called {n} time(s)"
            )
        return Ref(ref.layer, node)

    resolved = [
        GraphCall(gc.call, tuple(resolve(r) for r in gc.inputs), gc.output, gc.entry)
        for gc in pending
    ]
    return ModelGraph(
        name, "Functional", Ref(inp.layer), shape, _topological(resolved, Ref(inp.layer), where),
        resolve(out), tuple(layers), entry,
    )  # fmt: skip


def _topological(calls: Sequence[GraphCall], start: Ref, where: str) -> tuple[GraphCall, ...]:
    """The calls in an order where every input exists before it is used: the config's own
    order where it already is one (Keras writes it so; its summary lists layers in it)."""
    ready = {start}
    order: list[GraphCall] = []
    waiting = list(calls)
    while waiting:
        nxt = next((gc for gc in waiting if all(r in ready for r in gc.inputs)), None)
        if nxt is None:
            names = sorted({gc.call.name for gc in waiting})
            raise ConversionError(
                f"{where}: layers {names} cannot be reached from the model input "
                "(a loop, or a second input)"
            )
        order.append(nxt)
        ready.add(nxt.output)
        waiting.remove(nxt)
    return tuple(order)
