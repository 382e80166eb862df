"""Layer-by-layer comparison of a torch_cnn model with the Keras model it was ported from.

Keras is duck-typed here, so this module imports neither TensorFlow nor Keras; the
caller brings the Keras model. Seed models are compared layer by layer with their
chain; converted models (``KerasGraph``) node by node with the outputs of the Keras
layers of the same names (read through a Keras model that returns them all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.models.graph import KerasGraph

# Parity bars: max |Δ| on every layer's output.
FLOAT32_ATOL = 1e-5
FLOAT64_ATOL = 1e-12


def default_atol(dtype: torch.dtype) -> float:
    return FLOAT64_ATOL if dtype == torch.float64 else FLOAT32_ATOL


@dataclass(frozen=True)
class LayerDiff:
    keras_layer: str  # "conv2d (Conv2D)"
    torch_module: str  # "conv1"
    shape: tuple[int, ...]  # Keras layout, batch axis included
    params: int
    max_abs: float
    max_rel: float  # max |Δ| / max |keras|: relative to the layer's scale
    ok: bool


@dataclass(frozen=True)
class ParityReport:
    model: str
    dtype: str
    n_images: int
    atol: float
    layers: tuple[LayerDiff, ...]
    top1_agreement: float  # fraction of images whose argmax agrees

    @property
    def ok(self) -> bool:
        return all(d.ok for d in self.layers) and self.top1_agreement == 1.0

    @property
    def first_divergence(self) -> LayerDiff | None:
        """The first layer over tolerance: where a porting bug shows itself."""
        return next((d for d in self.layers if not d.ok), None)

    def format(self) -> str:
        kw = max(28, *(len(d.keras_layer) + 2 for d in self.layers))
        tw = max(14, *(len(d.torch_module) + 2 for d in self.layers))
        head = f"{'Keras layer':<{kw}}{'torch module':<{tw}}{'output shape':<22}{'params':>9}"
        head += f"{'max |Δ|':>11}{'max rel':>11}  status"
        images = f"{self.n_images} image{'s' if self.n_images != 1 else ''}"
        lines = [
            f"{self.model}: {images}, {self.dtype}, tolerance {self.atol:g}",
            head,
            "-" * len(head),
        ]
        for d in self.layers:
            shape = "(" + ", ".join(["None", *map(str, d.shape[1:])]) + ")"
            lines.append(
                f"{d.keras_layer:<{kw}}{d.torch_module:<{tw}}{shape:<22}{d.params:>9,}"
                f"{d.max_abs:>11.2e}{d.max_rel:>11.2e}  {'ok' if d.ok else 'FAIL'}"
            )
        lines.append(
            f"top-1 agreement: {self.top1_agreement:.4f}   {'PASS' if self.ok else 'FAIL'}"
        )
        return "\n".join(lines)


def to_keras_layout(out: torch.Tensor, flattened_from: tuple[int, ...] | None) -> np.ndarray:
    """A torch layer output in Keras's layout: NCHW → NHWC; a flatten in (H, W, C) order."""
    a = out.detach().cpu().numpy()
    if a.ndim == 4:
        return a.transpose(0, 2, 3, 1)
    if flattened_from is not None and len(flattened_from) == 3:
        c, h, w = flattened_from
        return a.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
    return a


def keras_layout(out: torch.Tensor, spec: TensorSpec) -> np.ndarray:
    """A converted model's tensor in Keras's layout: maps NHWC, a torch-order Flatten in
    Keras's (H, W, C) order."""
    return to_keras_layout(out, spec.chw if not spec.is_map else None)


def graph_layer_outputs(model: KerasGraph, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Every node's output of a converted model for NCHW ``x``, in Keras's layout, by name."""
    with torch.no_grad():
        outs = model.layer_outputs(x)
    return {
        node.name: keras_layout(outs[node.name], node.output)
        for node in model.nodes
        if node.name in outs
    }


def torch_layer_outputs(model: KerasStyleNet, x: torch.Tensor) -> list[np.ndarray]:
    """Every layer's output of ``model`` for NCHW ``x``, in Keras's layout."""
    with torch.no_grad():
        outs = list(model.layer_outputs(x).values())
    result, prev = [], tuple(x.shape[1:])
    for info, out in zip(model.layer_table, outs, strict=True):
        result.append(to_keras_layout(out, prev if info.keras_class == "Flatten" else None))
        prev = tuple(out.shape[1:])
    return result


def keras_layer_outputs(keras_model: Any, x_nhwc: np.ndarray) -> list[np.ndarray]:
    """Every non-input layer's output of a chain-shaped Keras model, called eagerly."""
    outs, h = [], x_nhwc
    for layer in keras_model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        h = layer(h)
        outs.append(np.asarray(h))
    return outs


def compare_outputs(
    model: KerasStyleNet,
    keras_names: Sequence[str],
    torch_outs: Sequence[np.ndarray],
    keras_outs: Sequence[np.ndarray],
    *,
    atol: float,
    dtype: str,
) -> ParityReport:
    """A report from precomputed per-layer outputs (both in Keras's layout)."""
    diffs = []
    for (info, module), name, t, k in zip(
        model.keras_layers(), keras_names, torch_outs, keras_outs, strict=True
    ):
        if t.shape != k.shape:
            raise ValueError(
                f"Keras layer {name} output {k.shape} does not match torch module "
                f"{info.module!r} output {t.shape} (Keras layout)"
            )
        params = sum(p.numel() for p in module.parameters())
        diffs.append(_diff(name, info.module, t, k, params, atol))
    agree = float(np.mean(torch_outs[-1].argmax(-1) == keras_outs[-1].argmax(-1)))
    return ParityReport(model.name, dtype, len(torch_outs[-1]), atol, tuple(diffs), agree)


def compare_with_keras(
    model: KerasStyleNet | KerasGraph,
    keras_model: Any,
    x: torch.Tensor,
    *,
    atol: float | None = None,
) -> ParityReport:
    """Run NCHW images ``x`` through both models and compare every layer's output.

    ``x`` must already have the torch model's dtype and device; Keras gets the
    same values as NHWC NumPy.
    """
    atol = default_atol(x.dtype) if atol is None else atol
    dtype = str(x.dtype).replace("torch.", "")
    x_nhwc = x.detach().cpu().permute(0, 2, 3, 1).numpy() if x.dim() == 4 else x.cpu().numpy()
    if isinstance(model, KerasGraph):
        return _compare_graph(model, keras_model, x, x_nhwc, atol, dtype)
    names = [
        f"{layer.name} ({type(layer).__name__})"
        for layer in keras_model.layers
        if type(layer).__name__ != "InputLayer"
    ]
    keras_outs = keras_layer_outputs(keras_model, x_nhwc)
    torch_outs = torch_layer_outputs(model, x)
    return compare_outputs(model, names, torch_outs, keras_outs, atol=atol, dtype=dtype)


def keras_named_outputs(keras_model: Any, x_nhwc: np.ndarray) -> dict[str, np.ndarray]:
    """The output of every top-level Keras layer (and op) by name, from one call of a model
    that returns them all (a functional model's graph, or a Sequential's layers in turn)."""
    import keras  # a live Keras model means Keras is importable

    layers = [op for op in getattr(keras_model, "_operations", keras_model.layers)]
    layers = [op for op in layers if type(op).__name__ != "InputLayer"]
    if type(keras_model).__name__ == "Sequential":
        outs, h = {}, x_nhwc
        for layer in layers:
            h = layer(h)
            outs[layer.name] = np.asarray(h)
        return outs
    probe = keras.Model(keras_model.inputs, [op.output for op in layers])
    values = call_keras(probe, x_nhwc)
    return {op.name: np.asarray(v) for op, v in zip(layers, values, strict=True)}


def call_keras(keras_model: Any, x: np.ndarray) -> Any:
    """``keras_model(x)`` in inference mode, ``x`` in the structure the model was built with
    (a functional model built on ``[input]`` takes a list: Keras warns otherwise)."""
    if isinstance(getattr(keras_model, "_inputs_struct", None), list):
        return keras_model([x], training=False)
    return keras_model(x, training=False)


def _compare_graph(
    model: KerasGraph, keras_model: Any, x: torch.Tensor, x_nhwc: np.ndarray, atol: float,
    dtype: str,
) -> ParityReport:  # fmt: skip
    keras_outs = keras_named_outputs(keras_model, x_nhwc)
    torch_outs = graph_layer_outputs(model, x)
    diffs = []
    seen: set[str] = set()
    for node in model.nodes:
        if node.name in seen or node.name not in keras_outs:
            continue
        seen.add(node.name)
        t, k = torch_outs[node.name], keras_outs[node.name]
        if t.shape != k.shape:
            raise ValueError(
                f"Keras layer {node.name} ({node.class_name}) output {k.shape} does not match "
                f"torch module {node.attr!r} output {t.shape} (Keras layout)"
            )
        params = sum(p.numel() for p in model.get_submodule(node.attr).parameters())
        diffs.append(_diff(f"{node.name} ({node.class_name})", node.attr, t, k, params, atol))
    final_t = graph_final(model, x)
    final_k = np.asarray(call_keras(keras_model, x_nhwc))
    agree = float(np.mean(final_t.argmax(-1) == final_k.argmax(-1))) if final_k.ndim == 2 else 1.0
    diffs.append(_diff("output", "forward", final_t, final_k, 0, atol))
    return ParityReport(model.name, dtype, len(final_t), atol, tuple(diffs), agree)


def graph_final(model: KerasGraph, x: torch.Tensor) -> np.ndarray:
    """``model(x)`` in Keras's layout."""
    with torch.no_grad():
        return keras_layout(model(x), model.output_spec)


def _diff(
    label: str, module: str, t: np.ndarray, k: np.ndarray, params: int, atol: float
) -> LayerDiff:
    delta = np.abs(t.astype(np.float64) - k.astype(np.float64))
    max_abs = float(delta.max(initial=0.0))
    scale = float(np.abs(k).max(initial=0.0))
    return LayerDiff(
        keras_layer=label,
        torch_module=module,
        shape=tuple(k.shape),
        params=params,
        max_abs=max_abs,
        max_rel=max_abs / scale if scale > 0 else max_abs,
        ok=bool(np.isfinite(max_abs) and max_abs <= atol),
    )
