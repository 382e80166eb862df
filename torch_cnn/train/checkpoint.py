"""``last.pt``: the training state ``fit`` writes after every epoch and ``resume`` continues from.

The model, optimizer and generator states, the epoch, the history and the run's config,
as tensors and plain containers only, so it loads with ``torch.load(weights_only=True)``.
Written atomically (a temporary file, then a rename): an interrupted write never replaces
the last good checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from torch_cnn import distributed as _dist
from torch_cnn._io import atomic_write
from torch_cnn.models import KerasStyleNet, TorchCnnModel
from torch_cnn.registry import create_model, list_models
from torch_cnn.train.results import History
from torch_cnn.weights import CheckpointError

CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = "torch_cnn.train_checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
# Settings that change which numbers a resumed run computes; a checkpoint must agree on them,
# and on the global batch (batch_size × world_size; see restore). A key that an older
# checkpoint lacks is not checked.
_RESUME_MUST_MATCH = (
    "model",
    "dtype",
    "seed",
    "augment",
    "optimizer",
    "optimizer_hparams",
    "num_train",
)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A training checkpoint written by ``fit``, read with ``torch.load(weights_only=True)`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: not a torch_cnn training checkpoint (format {got!r}); expected "
            f"format {CHECKPOINT_FORMAT!r}"
        )
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {ckpt.get('format_version')!r}; this torch_cnn "
            f"reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return ckpt


def model_from_checkpoint(
    path: str | os.PathLike[str], *, device: torch.device | str | None = None
) -> KerasStyleNet:
    """The model a training checkpoint holds (built from its recorded name, loaded strictly)."""
    ckpt = load_checkpoint(path)
    name = ckpt["config"]["model"]
    if name not in list_models():  # a converted Keras model: last.pt does not hold its graph
        raise CheckpointError(
            f"{path}: written for model {name!r}, which is not a registered model (a converted "
            "Keras model?); its run directory's model.safetensors rebuilds it "
            "(torch_cnn.load, or torch-cnn evaluate --checkpoint DIR/model.safetensors)"
        )
    model = create_model(name)
    if not isinstance(model, KerasStyleNet):  # pragma: no cover - every registered model is one
        raise CheckpointError(f"{path}: {ckpt['config']['model']!r} is not a KerasStyleNet")
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {model.name!r}: {exc}") from exc
    return model.to(device) if device is not None else model


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # Temp file, then rename: an interrupted write never replaces the last good checkpoint.
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def cpu_state(state: Any) -> Any:
    """A copy of a (nested) state dict with every tensor detached on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: cpu_state(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(cpu_state(v) for v in state)
    return state


def checkpoint_state(
    model: TorchCnnModel,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    epoch: int,
    history: History,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    # "torch": the global CPU stream fit gives dropout and noise layers (inside fork_rng); a
    # resumed run must continue it, not reseed it, to draw the masks an uninterrupted run draws.
    rng: dict[str, torch.Tensor] = {
        "generator": generator.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": epoch,
        "model": cpu_state(model.state_dict()),
        "optimizer": cpu_state(optimizer.state_dict()),
        "rng": rng,
        "history": {k: list(v) for k, v in history.items()},
        "seconds": list(history.seconds),
        "config": dict(config),
    }


def read_for_resume(path: Path, across_ranks: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` when there is none.

    Across ranks, rank 0 reads it and broadcasts it (or the reason it could not be read), so
    every rank restores the same state, or raises the same error, even where the others do
    not share rank 0's file system.
    """
    if not across_ranks:
        return load_checkpoint(path) if path.is_file() else None
    message: tuple[str, Any] = ("ok", None)
    if _dist.is_main():
        try:
            message = ("ok", load_checkpoint(path) if path.is_file() else None)
        except CheckpointError as exc:
            message = ("error", str(exc))
    kind, value = _dist.broadcast_object(message)
    if kind == "error":
        raise CheckpointError(value)
    ckpt: dict[str, Any] | None = value
    return ckpt


def _describe_batch(config: Mapping[str, Any]) -> str:
    world = config.get("world_size", 1)  # checkpoints from before distributed training: 1
    if world == 1:
        return f"batch_size={config['batch_size']}"
    return (
        f"batch_size={config['batch_size']} × world_size={world} "
        f"(global batch {config['batch_size'] * world})"
    )


# How a step is computed, not what it computes: never a reason to refuse a resume.
_IMPLEMENTATION_HPARAMS = ("foreach", "fused", "capturable", "differentiable", "maximize")


def _differs(key: str, saved: Any, current: Any) -> bool:
    """Whether a saved setting differs from the run's. Optimizer hyperparameters are compared
    on the keys both record (a checkpoint from before a hyperparameter existed lacks it),
    implementation switches aside."""
    if key != "optimizer_hparams" or not (isinstance(saved, list) and isinstance(current, list)):
        return bool(saved != current)
    if len(saved) != len(current):
        return True
    for s_group, c_group in zip(saved, current, strict=True):
        shared = (set(s_group) & set(c_group)) - set(_IMPLEMENTATION_HPARAMS)
        if any(s_group[k] != c_group[k] for k in shared):
            return True
    return False


def restore(
    path: Path,
    ckpt: Mapping[str, Any],
    config: Mapping[str, Any],
    model: TorchCnnModel,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: History,
    device: torch.device,
) -> int:
    """Load a checkpoint into the run's objects; returns the number of epochs it completed."""
    saved = ckpt["config"]
    for key in _RESUME_MUST_MATCH:
        if key in saved and _differs(key, saved[key], config[key]):
            raise CheckpointError(  # a ValueError
                f"cannot resume from {path}: it was written with {key}={saved.get(key)!r}; "
                f"received {key}={config[key]!r}"
            )
    # The batch order depends on the global batch alone, not on how it is split into ranks.
    if saved["batch_size"] * saved.get("world_size", 1) != config["global_batch_size"]:
        raise CheckpointError(
            f"cannot resume from {path}: it was written with {_describe_batch(saved)}; "
            f"received {_describe_batch(config)}"
        )
    model.load_state_dict(ckpt["model"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["rng"]["generator"])
    if "torch" in ckpt["rng"]:  # checkpoints from before it was recorded reseed the stream
        torch.set_rng_state(ckpt["rng"]["torch"])
    if device.type == "cuda" and "cuda" in ckpt["rng"]:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
    restored = History(ckpt["history"], ckpt["seconds"])
    history.clear()
    history.update(restored)
    history.seconds = restored.seconds
    epoch: int = ckpt["epoch"]
    return epoch
