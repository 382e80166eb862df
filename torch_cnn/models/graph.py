"""Any Keras Sequential or Functional model as a native torch module: ``KerasGraph``.

A converted model is a plain ``nn.Module`` whose children are native torch
modules (``nn.Conv2d``, ``nn.Linear``, ...) registered under the Keras layer
names, and whose forward pass walks the Keras graph in topological order. The
graph is fixed at build time: ``torch.compile``, ``torch.export`` and
``torch.onnx.export`` trace straight through the loop.

Layout: Keras keeps images channels-last; torch computes them channels-first.
What flows along an edge is described by a ``TensorSpec`` holding the *Keras*
per-sample shape. A rank-3 Keras shape ``(H, W, C)`` (an image map) is carried
as an NCHW tensor; every other rank is carried exactly as Keras holds it. So
the model takes NCHW images and returns NCHW maps or ``(N, units)`` vectors.
The one exception is a ``Flatten`` whose only readers are ``Dense`` layers:
it may flatten in torch's (C, H, W) order (``TensorSpec.chw`` records the map
it came from) and the Dense folds that permutation into its kernel rows, as
the seed models do, instead of transposing activations at run time.

That is the layout by shape. In memory, a float32 model with wide convolutions
computes its maps channels_last by default (``memory_format``, as the seed
models: see ``torch_cnn.models.base.compute_format``), and a map it returns is
handed back in torch's default (NCHW-contiguous) layout.

Weights travel through ``WeightMap`` rows: per Keras variable, in Keras's
order, the torch parameter or buffer it becomes and the layout transforms both
ways. Porting (both directions) and the ``.weights.h5`` writer read only these
rows, so a converter states each layout fact once.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.base import MemoryFormatMixin

Activation = Callable[[torch.Tensor], torch.Tensor]


def _same(a: np.ndarray) -> np.ndarray:
    return a


@dataclass(frozen=True)
class WeightMap:
    """One Keras variable of a layer and the torch tensor it becomes.

    ``shape`` is the Keras shape the layer's config implies (checked before any
    copy); ``to_torch``/``to_keras`` are the layout transforms (transposes,
    the Flatten row permutation); ``torch_name`` is a parameter or buffer of
    the layer's module (``"weight"``, ``"running_mean"``).
    """

    keras_name: str
    torch_name: str
    shape: tuple[int, ...]
    to_torch: Callable[[np.ndarray], np.ndarray] = _same
    to_keras: Callable[[np.ndarray], np.ndarray] = _same
    kinds: str = "f"  # the NumPy dtype kinds a source may hold it in (a counter: "iuf")


@dataclass(frozen=True)
class GraphNode:
    """One call of a Keras layer: its module, where its inputs come from, what it returns.

    ``inputs`` index the graph's value list: 0 is the model input, ``k`` the
    output of node ``k - 1``. ``args`` rebuilds the call (``None`` where an
    input tensor goes, constants as they are), so a node may take constants
    (``x + 3.0`` is ``inputs=(k,)``, ``args=(None, 3.0)`` for an op module
    that takes them).
    """

    name: str  # the Keras layer name, as the user wrote it
    class_name: str  # "Conv2D", or an op: "keras.ops.add"
    attr: str  # the torch attribute holding the module
    inputs: tuple[int, ...]
    output: TensorSpec
    weights: tuple[WeightMap, ...] = ()
    activation: str = "linear"  # the fused Keras activation, by name
    trainable: bool = True
    config: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


_RESERVED = set(dir(nn.Module)) | {"logits", "layer_outputs", "nodes", "keras_config"}


def sanitize_name(name: str, taken: set[str]) -> str:
    """A Keras layer name as a torch attribute: ``"block1/conv"`` → ``"block1_conv"``, unique."""
    attr = re.sub(r"\W", "_", name) or "layer"
    if attr[0].isdigit() or keyword.iskeyword(attr) or attr in _RESERVED:
        attr = f"{attr}_"
    base, k = attr, 1
    while attr in taken:
        attr = f"{base}_{k}"
        k += 1
    taken.add(attr)
    return attr


class KerasGraph(MemoryFormatMixin):
    """A Keras model converted to torch: native modules under the Keras layer names.

    ``model(x)`` takes NCHW images and returns what Keras returns (NCHW for
    image outputs, ``(N, units)`` for vectors; probabilities where the Keras
    model ends in softmax). ``model.logits(x)`` returns the values before a
    final softmax or sigmoid, for numerically stable losses. Built by
    ``torch_cnn.from_keras``; ``keras_config`` is the Keras model config it
    was built from (``torch_cnn.save`` stores it, ``torch_cnn.load`` rebuilds
    from it). ``memory_format`` is the layout maps are computed in, as for the seed
    models: ``"auto"`` (channels_last where measured faster: float32 batches through
    convolutions of 16 channels and more), ``"channels_last"`` or ``"contiguous"``.
    """

    def __init__(
        self,
        name: str,
        input_spec: TensorSpec,
        nodes: Sequence[GraphNode],
        modules: Mapping[str, nn.Module],
        activations: Sequence[Activation | None],
        *,
        output: int | None = None,
        keras_config: Mapping[str, Any] | None = None,
        check_inputs: bool = True,
        input_name: str = "input_layer",
        keras_version: str | None = None,
    ) -> None:
        super().__init__()
        if len(activations) != len(nodes):
            raise ValueError(f"{len(nodes)} nodes but {len(activations)} activations")
        self.name = name
        self.input_name = input_name  # the Keras InputLayer's name
        self.keras_version = keras_version  # of the Keras that wrote the source, when known
        self.input_spec = input_spec
        self.nodes: tuple[GraphNode, ...] = tuple(nodes)
        self.keras_config = dict(keras_config or {})
        self.check_inputs = check_inputs
        self._activations = tuple(activations)
        self._output = len(nodes) if output is None else output
        for node in self.nodes:
            if node.attr not in modules:
                raise ValueError(f"node {node.name!r} has no module {node.attr!r}")
            if node.attr not in self._modules:
                self.add_module(node.attr, modules[node.attr])
        # The last node reading each value: values are dropped after it (peak memory).
        last_use = {}
        for k, node in enumerate(self.nodes):
            for i in node.inputs:
                last_use[i] = k
        self._release = tuple(
            tuple(i for i in set(node.inputs) if last_use[i] == k and i != self._output)
            for k, node in enumerate(self.nodes)
        )

    @property
    def output_spec(self) -> TensorSpec:
        return self.input_spec if self._output == 0 else self.nodes[self._output - 1].output

    @property
    def output_activation(self) -> str:
        """The final node's activation ("softmax", "sigmoid", "linear", ...).

        An ``Activation`` layer is converted as the identity with its activation fused,
        so a model ending in ``Activation("softmax")`` reports "softmax" too.
        """
        if self._output == 0:
            return "linear"
        return self.nodes[self._output - 1].activation

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``TypeError``/``ValueError`` saying what was received and what is expected."""
        want = self.input_spec.torch_shape
        expected = "(N, " + ", ".join("?" if d is None else str(d) for d in want) + ")"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} expects a torch.Tensor {expected}; received {type(x)}")
        if not x.is_floating_point():
            raise TypeError(
                f"{self.name} expects floating-point inputs; received dtype {x.dtype}. "
                "Convert uint8 images with x.float() / 255 (or as the Keras model expects)."
            )
        param = next(self.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            raise TypeError(
                f"{self.name} has {param.dtype} parameters; received an input of dtype {x.dtype}. "
                f"Use x.to({param.dtype}) or model.to({x.dtype})."
            )
        shape = tuple(x.shape)
        fits = len(shape) == len(want) + 1 and all(
            w is None or w == s for w, s in zip(want, shape[1:], strict=True)
        )
        if not fits:
            hint = ""
            if self.input_spec.is_map and len(shape) == 4 and shape[-1] == want[0]:
                hint = (
                    " This looks like channels-last (NHWC) images as Keras takes them; "
                    "torch_cnn expects NCHW: x.permute(0, 3, 1, 2)."
                )
            elif len(shape) == len(want) and all(
                w is None or w == s for w, s in zip(want, shape, strict=True)
            ):
                hint = " For one sample use x.unsqueeze(0)."
            layout = " (NCHW)" if self.input_spec.is_map else ""
            raise ValueError(
                f"{self.name} expects a batch of shape {expected}{layout}; received shape "
                f"{shape}.{hint}"
            )

    def _run(self, x: torch.Tensor, *, keep: bool, final_activation: bool) -> list[torch.Tensor]:
        if self.check_inputs:
            self.check_input(x)
        fmt = self.compute_format(x)
        if x.dim() == 4:  # an image batch: into the layout the maps are computed in
            x = x.contiguous(memory_format=fmt)
        values: list[torch.Tensor | None] = [x]
        kept: list[torch.Tensor] = []
        for k, node in enumerate(self.nodes):
            args = [values[i] for i in node.inputs]
            y = self._modules[node.attr](*args)  # type: ignore[misc]
            act = self._activations[k]
            if act is not None and (final_activation or k + 1 != self._output):
                y = act(y)
            values.append(y)
            if keep:
                kept.append(y)
            else:
                for i in self._release[k]:
                    values[i] = None
        if keep:
            return kept
        out = values[self._output]
        assert out is not None
        if fmt == torch.channels_last and out.dim() == 4:
            out = out.contiguous()  # a map comes back in torch's default layout
        return [out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the Keras model returns for the same inputs (NCHW maps, ``(N, units)`` vectors)."""
        return self._run(x, keep=False, final_activation=True)[0]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output before the final node's fused activation (softmax, sigmoid, ...)."""
        return self._run(x, keep=False, final_activation=False)[0]

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every node's output (after its activation), keyed by Keras layer name, torch layout."""
        outs = self._run(x, keep=True, final_activation=True)
        return {node.name: out for node, out in zip(self.nodes, outs, strict=True)}

    def extra_repr(self) -> str:
        return f"name={self.name!r}, input={self.input_spec.keras_str()}, nodes={len(self.nodes)}"


def check_keras_arrays(
    where: str, layer: str, maps: Sequence[WeightMap], arrays: Sequence[np.ndarray]
) -> None:
    """Count, dtype and shape of a layer's Keras arrays against its ``WeightMap`` rows."""
    if len(arrays) != len(maps):
        names = ", ".join(m.keras_name for m in maps) or "none"
        raise ValueError(
            f"{where}: Keras layer {layer} has {len(arrays)} weight arrays; "
            f"its config implies {len(maps)} ({names})"
        )
    for m, a in zip(maps, arrays, strict=True):
        a = np.asarray(a)
        if a.dtype.kind not in m.kinds:
            want = "a floating-point dtype (float16/32/64)" if m.kinds == "f" else "a number"
            raise ValueError(
                f"{where}: Keras layer {layer} {m.keras_name} has dtype {a.dtype}; expected {want}"
            )
        if tuple(a.shape) != tuple(m.shape):
            raise ValueError(
                f"{where}: Keras layer {layer} {m.keras_name} has shape {tuple(a.shape)}; "
                f"its config implies {tuple(m.shape)}"
            )


def keras_arrays_to_state(
    where: str, layer: str, maps: Sequence[WeightMap], arrays: Sequence[np.ndarray]
) -> dict[str, torch.Tensor]:
    """A layer's Keras arrays as ``{torch_name: tensor}`` (CPU, source dtype), checked first."""
    check_keras_arrays(where, layer, maps, arrays)
    return {
        m.torch_name: torch.from_numpy(np.array(m.to_torch(np.asarray(a)), order="C"))
        for m, a in zip(maps, arrays, strict=True)
    }


def load_layer_arrays(
    module: nn.Module, maps: Sequence[WeightMap], arrays: Sequence[np.ndarray], layer: str = "?"
) -> None:
    """Copy one layer's Keras arrays into ``module`` (shapes checked; dtype and device cast)."""
    state = keras_arrays_to_state("keras arrays", layer, maps, arrays)
    own = dict(module.named_parameters()) | dict(module.named_buffers())
    for name, t in state.items():
        if name not in own:
            raise ValueError(f"{layer}: module {type(module).__name__} has no tensor {name!r}")
        if tuple(own[name].shape) != tuple(t.shape):
            raise ValueError(
                f"{layer}: {name} is {tuple(own[name].shape)} in torch; the Keras array gives "
                f"{tuple(t.shape)}"
            )
    with torch.no_grad():
        for name, t in state.items():
            own[name].copy_(t)
