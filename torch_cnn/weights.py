"""torch-side weight files (formerly ``torch_cnn.checkpoint``): ``save``/``load`` in safetensors, self-describing through metadata.

A file records the registered model name, the package version and the dtype
in its safetensors metadata, so ``load(path)`` needs nothing else. safetensors
holds tensors only: loading never executes code from the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from torch_cnn._io import atomic_write
from torch_cnn._version import __version__
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.registry import create_model, list_models

FORMAT = "torch_cnn.weights"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A weights file that cannot be read as a torch_cnn model; nothing was loaded."""


def save(model: nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write ``model``'s weights to a ``.safetensors`` file, atomically; returns the path."""
    if not isinstance(model, KerasStyleNet):
        raise TypeError(f"save needs a torch_cnn model; received {type(model).__name__}")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    dtype = str(next(model.parameters()).dtype).replace("torch.", "")
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "torch_cnn_version": __version__,
        "dtype": dtype,
        "input_shape": json.dumps(list(model.input_shape)),
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))
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


def load(
    path: str | os.PathLike[str], *, device: torch.device | str | None = None
) -> KerasStyleNet:
    """A model built from the name recorded in the file, with the file's weights."""
    meta = read_metadata(path)
    name = meta["model"]
    if name not in list_models():
        raise CheckpointError(f"{path}: model {name!r} is not registered ({list_models()})")
    dtype = getattr(torch, meta.get("dtype", "float32"), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CheckpointError(f"{path}: unexpected dtype {meta.get('dtype')!r}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read tensors ({exc})") from exc
    model = create_model(name, device="meta", dtype=dtype)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = [
            f"{k}: file {got[k]} vs model {expected[k]}"
            for k in expected.keys() & got.keys()
            if got[k] != expected[k]
        ]
        raise CheckpointError(
            f"{path}: tensors do not fit {name!r}: missing {missing}, unexpected {extra}, "
            f"wrong shapes {wrong}"
        )
    model = create_model(name, device=device, dtype=dtype)
    model.load_state_dict(state, strict=True)
    assert isinstance(model, KerasStyleNet)
    return model
