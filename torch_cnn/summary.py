"""A Keras-style ``model.summary()``: the rows Keras prints, for seed and converted models.

Rows are what Keras's ``summary_utils.print_summary`` lists: a Functional model's
``InputLayer`` and the ops it records (``x + 3.0``) included, a Sequential's not;
output shapes as Keras prints them (``(None, 16, 16, 10)``, channels last); the
parameter count of each layer counted as Keras counts variables (BatchNormalization's
moving mean and variance included, as non-trainable); and a "Connected to" column
where Keras prints one (a Functional model that is not a plain chain).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import nn

from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.models.graph import GraphNode, KerasGraph, WeightMap


@dataclass(frozen=True)
class SummaryRow:
    name: str  # the Keras layer name ("   └ conv2d" inside an expanded nested model)
    class_name: str
    output_shape: str  # as Keras prints it
    params: int
    connected_to: tuple[str, ...] = ()  # "conv2d[0][0]"; empty for the input


@dataclass(frozen=True)
class Summary:
    title: str
    rows: tuple[SummaryRow, ...]
    trainable: int
    non_trainable: int
    trainable_bytes: int
    non_trainable_bytes: int
    connected: bool  # whether Keras prints the "Connected to" column

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


def _size(n_bytes: float) -> str:
    """``summary_utils.readable_memory_size``: 59.06 KB."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n_bytes / 1024 < 1 or unit == "TB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024
    raise AssertionError


def _seed_summary(model: KerasStyleNet) -> Summary:
    shapes = model.output_shapes()
    rows = []
    if model.keras_api == "functional":
        c, h, w = model.input_shape
        rows.append(SummaryRow("input_layer", "InputLayer", f"(None, {h}, {w}, {c})", 0))
    for info, module in model.keras_layers():
        s = shapes[info.module]
        spec = TensorSpec((*s[1:], s[0]) if len(s) == 3 else s)
        count = sum(p.numel() for p in module.parameters())
        rows.append(SummaryRow(info.module, info.keras_class, spec.keras_str(), count))
    return _with_totals(model, model.name, rows, connected=False)


def _weight_counts(module: nn.Module, maps: Sequence[WeightMap]) -> tuple[int, int]:
    """(trainable, non-trainable) element counts of a node's Keras variables."""
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    trainable = non_trainable = 0
    for wm in maps:
        name = wm.torch_name
        if name in params:
            if params[name].requires_grad:
                trainable += params[name].numel()
            else:
                non_trainable += params[name].numel()
        elif name in buffers:
            non_trainable += buffers[name].numel()
    return trainable, non_trainable


Counts = tuple[int, int, int, int]  # trainable, non-trainable; their bytes


def _layers(model: KerasGraph) -> Iterator[tuple[GraphNode, nn.Module, Counts]]:
    """Each layer of a converted model once (a shared layer at its first call), its module
    and its ``Counts``; a nested model's are its totals."""
    seen: set[str] = set()
    for node in model.nodes:
        if node.attr in seen:
            continue
        seen.add(node.attr)
        module = model.get_submodule(node.attr)
        if isinstance(module, KerasGraph):
            yield node, module, _graph_counts(module)
            continue
        a, b = _weight_counts(module, node.weights)
        size = next((p.element_size() for p in module.parameters()), 4)
        yield node, module, (a, b, a * size, b * size)


def _graph_counts(model: KerasGraph) -> Counts:
    """The ``Counts`` of a converted model."""
    t = nt = tb = ntb = 0
    for _, _, (a, b, c, d) in _layers(model):
        t, nt, tb, ntb = t + a, nt + b, tb + c, ntb + d
    return t, nt, tb, ntb


def _is_chain(model: KerasGraph) -> bool:
    """Keras's ``sequential_like``: one input per call, each value read once, no shared layer."""
    reads: dict[int, int] = {}
    attrs: set[str] = set()
    for k, node in enumerate(model.nodes):
        if len(node.inputs) != 1 or node.inputs[0] != k or node.attr in attrs:
            return False
        attrs.add(node.attr)
        reads[node.inputs[0]] = reads.get(node.inputs[0], 0) + 1
    return all(n == 1 for n in reads.values())


def _is_functional(model: KerasGraph) -> bool:
    return model.keras_config.get("class_name") != "Sequential"


def _connected(model: KerasGraph) -> bool:
    """Whether Keras prints the "Connected to" column: a Functional model, not a chain."""
    return _is_functional(model) and not _is_chain(model)


def _graph_rows(model: KerasGraph, expand_nested: bool, level: int = 0) -> list[SummaryRow]:
    connected = _connected(model)
    names = [model.input_name, *(n.name for n in model.nodes)]
    calls: dict[str, int] = {}
    rows: list[SummaryRow] = []
    prefix = "   " * level + "└ " if level else ""
    if _is_functional(model):
        rows.append(
            SummaryRow(f"{prefix}{model.input_name}", "InputLayer", model.input_spec.keras_str(), 0)
        )
    call_index: list[int] = [0]
    for node in model.nodes:
        call_index.append(calls.get(node.name, 0))
        calls[node.name] = calls.get(node.name, 0) + 1
    for node, module, (a, b, _, _) in _layers(model):
        links = tuple(f"{names[i]}[{call_index[i]}][0]" for i in node.inputs) if connected else ()
        rows.append(
            SummaryRow(
                f"{prefix}{node.name}", node.class_name, node.output.keras_str(), a + b, links
            )
        )
        if expand_nested and isinstance(module, KerasGraph):
            rows += _graph_rows(module, expand_nested, level + 1)
    return rows


def _with_totals(model: nn.Module, title: str, rows: list[SummaryRow], connected: bool) -> Summary:
    if isinstance(model, KerasGraph):
        t, nt, tb, ntb = _graph_counts(model)
    else:
        params = list(model.parameters())
        t = sum(p.numel() for p in params if p.requires_grad)
        nt = sum(p.numel() for p in params if not p.requires_grad)
        tb = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
        ntb = sum(p.numel() * p.element_size() for p in params if not p.requires_grad)
    return Summary(title, tuple(rows), t, nt, tb, ntb, connected)


def summarize(model: nn.Module, *, expand_nested: bool = False) -> Summary:
    """The summary's rows and totals as data (what ``summary`` prints)."""
    if isinstance(model, KerasStyleNet):
        return _seed_summary(model)
    if isinstance(model, KerasGraph):
        rows = _graph_rows(model, expand_nested)
        return _with_totals(model, model.name, rows, _connected(model))
    raise TypeError(f"summary needs a torch_cnn model; received {type(model).__name__}")


def summary(model: nn.Module, *, expand_nested: bool = False) -> str:
    """A table of each Keras layer, its output shape (as Keras prints it) and parameters.

    >>> import torch_cnn
    >>> print(torch_cnn.summary(torch_cnn.create_model("model_cnn")))  # doctest: +ELLIPSIS
    Model: "model_cnn"
    ...
    Total params: 15,120 (59.06 KB)
    ...
    """
    s = summarize(model, expand_nested=expand_nested)
    head = ["Layer (type)", "Output Shape", "Param #"] + (["Connected to"] if s.connected else [])
    cells = [
        [f"{r.name} ({r.class_name})", r.output_shape, f"{r.params:,}"]
        + ([", ".join(r.connected_to) or "-"] if s.connected else [])
        for r in s.rows
    ]
    widths = [max(len(head[i]), *(len(c[i]) for c in cells)) + 2 for i in range(len(head))]
    widths[0], widths[1] = max(widths[0], 32), max(widths[1], 24)

    def line(values: Sequence[str]) -> str:
        out = f"{values[0]:<{widths[0]}}{values[1]:<{widths[1]}}{values[2]:>{widths[2]}}"
        return out + (f"  {values[3]}" if len(values) > 3 else "")

    rule = "─" * (sum(widths) + (2 if s.connected else 0))
    lines = [f'Model: "{s.title}"', rule, line(head), "═" * len(rule)]
    lines += [line(c) for c in cells]
    lines += [
        rule,
        f"Total params: {s.total:,} ({_size(s.trainable_bytes + s.non_trainable_bytes)})",
        f"Trainable params: {s.trainable:,} ({_size(s.trainable_bytes)})",
        f"Non-trainable params: {s.non_trainable:,} ({_size(s.non_trainable_bytes)})",
    ]
    return "\n".join(lines)
