"""torch-side weight files: ``save``/``load`` in safetensors, self-describing through metadata.

A file records, in its safetensors metadata, what to build: a registered model's name
(the seed models), or the Keras config of a converted model (``torch_cnn.from_keras``),
plus the package version and the dtype. ``load(path)`` needs nothing else. safetensors
holds tensors only and a Keras config is JSON read by torch_cnn's own parser, so loading
never executes code from the file. Everything is checked before a model is returned: the
tensors' names, shapes and dtypes against the model the metadata describes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import nn

from torch_cnn._io import atomic_write
from torch_cnn._version import __version__
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.models.graph import KerasGraph
from torch_cnn.registry import create_model, list_models

FORMAT = "torch_cnn.weights"
FORMAT_VERSION = "1"
KERAS_GRAPH = "keras_graph"  # the "model" of a converted Keras model; its config is "keras_config"
MAX_CONFIG_BYTES = 64 << 20  # a Keras config in the metadata; real ones are KBs


class CheckpointError(ValueError):
    """A weights file that cannot be read as a torch_cnn model; nothing was loaded."""


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights to a ``.safetensors`` file, atomically; returns the path.

    ``model`` is a seed model (``create_model``) or a converted Keras model
    (``from_keras``), whose Keras config is stored with it.
    """
    if isinstance(model, KerasStyleNet):
        described = {"model": model.name, "input_shape": json.dumps(list(model.input_shape))}
    elif isinstance(model, KerasGraph):
        described = {
            "model": KERAS_GRAPH,
            "name": model.name,
            "keras_config": json.dumps(model.keras_config),
            "keras_version": model.keras_version or "",
            "input_shape": json.dumps(list(model.input_spec.shape)),
        }
    else:
        raise TypeError(f"save needs a torch_cnn model; received {type(model).__name__}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    param = next(model.parameters(), None)
    dtype = str(param.dtype if param is not None else torch.float32).replace("torch.", "")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "torch_cnn_version": __version__,
        "dtype": dtype,
        **described,
    }
    data = save_bytes(tensors, metadata=metadata)  # in memory, then plain file I/O
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return Path(path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of a torch_cnn weights file (raises ``CheckpointError`` for anything else)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FORMAT or "model" not in meta:
        raise CheckpointError(
            f"{path}: safetensors file without torch_cnn metadata (format={meta.get('format')!r}); "
            f"expected format={FORMAT!r} and a model name"
        )
    return dict(meta)


def load(path: str | os.PathLike[str], *, device: torch.device | str | None = None) -> nn.Module:
    """The model the file describes, with the file's weights, in eval mode.

    A seed model is built from its registered name; a converted Keras model from the
    Keras config stored with it (no code is executed). Names, shapes and dtypes of every
    tensor are checked against that model before anything is loaded.
    """
    meta = read_metadata(path)
    dtype = getattr(torch, meta.get("dtype", "float32"), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"{path}: unexpected dtype {meta.get('dtype')!r} in its metadata")
    state = _read_tensors(path)
    template = _build(path, meta, "meta", dtype)
    _check_tensors(path, state, template.state_dict(), dtype, meta["model"])
    model = _build(path, meta, device, dtype)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _build(
    path: str | os.PathLike[str], meta: Mapping[str, str], device: Any, dtype: torch.dtype
) -> nn.Module:
    name = meta["model"]
    if name == KERAS_GRAPH:
        from torch_cnn.convert.build import from_config  # above this module: only when needed

        raw = meta.get("keras_config", "")
        if len(raw) > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{path}: its Keras config is {len(raw)} bytes; refused")
        try:
            config = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise CheckpointError(f"{path}: its Keras config is not readable JSON ({exc})") from exc
        try:
            return from_config(
                config, device=device, dtype=dtype, where=str(path),
                keras_version=meta.get("keras_version") or None,
            )  # fmt: skip
        except ValueError as exc:  # PortingError/ConversionError
            raise CheckpointError(f"{path}: its Keras config cannot be built: {exc}") from exc
    if name not in list_models():
        raise CheckpointError(f"{path}: model {name!r} is not registered ({list_models()})")
    return create_model(name, device=device, dtype=dtype)


def _read_tensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from exc


def _check_tensors(
    path: str | os.PathLike[str],
    got: Mapping[str, torch.Tensor],
    want: Mapping[str, torch.Tensor],
    dtype: torch.dtype,
    name: str,
) -> None:
    """Names and shapes as the model has them; every weight in the metadata's dtype (a file
    holding integer, bool or complex weights, or another float dtype, is refused, not cast).
    The model's integer buffers (counters: BatchNorm's batches, Normalization's count) keep
    their own dtype."""
    shapes = {k: tuple(v.shape) for k, v in got.items()}
    expected = {k: tuple(v.shape) for k, v in want.items()}
    if shapes != expected:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        wrong = [
            f"{k}: file {shapes[k]} vs model {expected[k]}"
            for k in expected.keys() & shapes.keys()
            if shapes[k] != expected[k]
        ]
        raise CheckpointError(
            f"{path}: tensors do not fit {name!r}: missing {missing}, unexpected {extra}, "
            f"wrong shapes {wrong}"
        )
    for key, t in got.items():
        allowed = dtype if want[key].is_floating_point() else want[key].dtype  # counters
        if t.dtype != allowed:
            raise CheckpointError(
                f"{path}: tensor {key!r} has dtype {t.dtype}; the file says the model is "
                f"{dtype} ({key} expected {allowed})"
            )
