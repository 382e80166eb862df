"""Layer-by-layer comparison of a torch_cnn model with the Keras model it was ported from.

Keras is duck-typed here (its layers are called eagerly), so this module
imports neither TensorFlow nor Keras; the caller brings the Keras model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch_cnn.models.base import KerasStyleNet

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
        head = f"{'Keras layer':<{kw}}{'torch module':<14}{'output shape':<22}{'params':>9}"
        head += f"{'max |Δ|':>11}{'max rel':>11}  status"
        lines = [
            f"{self.model}: {self.n_images} images, {self.dtype}, tolerance {self.atol:g}",
            head,
            "-" * len(head),
        ]
        for d in self.layers:
            shape = "(" + ", ".join(["None", *map(str, d.shape[1:])]) + ")"
            lines.append(
                f"{d.keras_layer:<{kw}}{d.torch_module:<14}{shape:<22}{d.params:>9,}"
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
        delta = np.abs(t.astype(np.float64) - k.astype(np.float64))
        max_abs = float(delta.max(initial=0.0))
        scale = float(np.abs(k).max(initial=0.0))
        diffs.append(
            LayerDiff(
                keras_layer=name,
                torch_module=info.module,
                shape=tuple(k.shape),
                params=sum(p.numel() for p in module.parameters()),
                max_abs=max_abs,
                max_rel=max_abs / scale if scale > 0 else max_abs,
                ok=bool(np.isfinite(max_abs) and max_abs <= atol),
            )
        )
    agree = float(np.mean(torch_outs[-1].argmax(-1) == keras_outs[-1].argmax(-1)))
    return ParityReport(model.name, dtype, len(torch_outs[-1]), atol, tuple(diffs), agree)


def compare_with_keras(
    model: KerasStyleNet, keras_model: Any, x: torch.Tensor, *, atol: float | None = None
) -> ParityReport:
    """Run NCHW images ``x`` through both models and compare every layer's output.

    ``x`` must already have the torch model's dtype and device; Keras gets the
    same values as NHWC NumPy.
    """
    names = [
        f"{layer.name} ({type(layer).__name__})"
        for layer in keras_model.layers
        if type(layer).__name__ != "InputLayer"
    ]
    keras_outs = keras_layer_outputs(keras_model, x.detach().cpu().permute(0, 2, 3, 1).numpy())
    torch_outs = torch_layer_outputs(model, x)
    return compare_outputs(
        model, names, torch_outs, keras_outs,
        atol=default_atol(x.dtype) if atol is None else atol, dtype=str(x.dtype).replace("torch.", ""),
    )  # fmt: skip
