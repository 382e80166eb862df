"""Convert one live Keras layer with its registered converter and compare the two (tests only).

The layer's config goes through ``keras.saving.serialize_keras_object`` and a JSON
round trip, so the converter sees exactly what a ``.keras`` file would hold.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
import torch

from parity_tests.helpers import DTYPES as TORCH_DTYPE
from torch_cnn.convert.registry import BuildContext, Converted, KerasCall, TensorArg, get_converter
from torch_cnn.layers.spec import TensorSpec
from torch_cnn.models.graph import load_layer_arrays

DTYPES = tuple(TORCH_DTYPE)  # ("float32", "float64")
KERAS_DTYPE = {dtype: name for name, dtype in TORCH_DTYPE.items()}  # torch.float32 → "float32"
# The parity bars (max |Δ| of a layer's output), by dtype name and by torch dtype.
_BARS = {"float32": 1e-5, "float64": 1e-12}
BAR: dict[str | torch.dtype, float] = {**_BARS, **{TORCH_DTYPE[n]: b for n, b in _BARS.items()}}
WRONG = 1e-3  # a deliberately wrong variant differs from Keras by at least this much


def grid(cases: Sequence[tuple[Any, ...]], fast: Sequence[tuple[Any, ...]]) -> list[Any]:
    """``cases`` as pytest params, those not in ``fast`` marked slow (the full grid)."""
    return [c if c in fast else pytest.param(*c, marks=pytest.mark.slow) for c in cases]


def keras_call(keras: Any, layer: Any, n_inputs: int = 1) -> KerasCall:
    """The ``KerasCall`` a saved file would record for ``layer`` called on ``n_inputs`` tensors."""
    entry = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    args: tuple[Any, ...] = (
        (TensorArg(0),) if n_inputs == 1 else ([TensorArg(i) for i in range(n_inputs)],)
    )
    return KerasCall(
        name=entry["config"]["name"],
        class_name=entry["class_name"],
        config=entry["config"],
        module=entry.get("module"),
        args=args,
    )


def to_torch_layout(a: np.ndarray, spec: TensorSpec) -> torch.Tensor:
    """A Keras-layout array as the torch tensor the converted module takes (NCHW for maps)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.permute(0, 3, 1, 2).contiguous() if spec.is_map else t


def to_keras_layout(t: torch.Tensor, spec: TensorSpec) -> np.ndarray:
    """A torch output back in Keras's layout (NHWC for maps; Keras order for a Flatten)."""
    a = t.detach().cpu().numpy()
    if spec.is_map:
        return a.transpose(0, 2, 3, 1)
    if spec.chw is not None:  # a Flatten that kept torch's (C, H, W) order
        c, h, w = spec.chw
        return a.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
    return a


def convert_layer(
    keras: Any,
    layer: Any,
    inputs: Sequence[np.ndarray],
    *,
    dtype: torch.dtype = torch.float64,
    flatten_order: str = "keras",
) -> tuple[Converted, np.ndarray, np.ndarray]:
    """Convert ``layer`` (built by calling it on ``inputs``), copy its weights, run both.

    Returns the converted layer, Keras's output and torch's output in Keras layout.
    ``inputs`` are Keras-layout arrays with the batch axis. The Keras layer is called
    eagerly, in inference mode.
    """
    keras_out = np.asarray(layer(inputs[0] if len(inputs) == 1 else list(inputs), training=False))
    specs = [TensorSpec(tuple(a.shape[1:])) for a in inputs]
    call = keras_call(keras, layer, len(inputs))
    ctx = BuildContext(dtype=dtype, flatten_order=flatten_order)  # type: ignore[arg-type]
    converted = get_converter(call).build(call, specs, ctx)
    load_layer_arrays(
        converted.module,
        converted.weights,
        [np.asarray(w) for w in layer.get_weights()],
        layer.name,
    )
    converted.module.eval()
    xs = [
        to_torch_layout(a.astype(np.float64), s).to(dtype)
        for a, s in zip(inputs, specs, strict=True)
    ]
    with torch.no_grad():
        y = converted.module(*xs)
        if converted.activation != "linear":
            from torch_cnn.layers.activations import get_activation

            act = get_activation(converted.activation, converted.output)
            if act is not None:
                y = act(y)
    assert tuple(keras_out.shape[1:]) == tuple(converted.output.shape), (
        f"output spec {converted.output.shape} vs Keras {keras_out.shape[1:]}"
    )
    return converted, keras_out, to_keras_layout(y, converted.output)


def max_abs(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| in float64 (0 for empty arrays)."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max(initial=0.0))
