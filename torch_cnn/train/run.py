"""A run directory: what a training run leaves behind, with its provenance, in one schema.

``torch-cnn train --out DIR`` writes, and the scripts that train Keras write the same
``history.json`` and ``metrics.json`` schema (``scripts/train_keras.py``):

- ``history.json``: Keras's ``history.history`` (``loss``, ``accuracy``, ``val_loss``,
  ``val_accuracy``, one value per epoch);
- ``metrics.json``: test loss and accuracy, per-class accuracy, the confusion matrix, the
  training time, device, versions, seed, data directory, image counts and the full config;
- ``curves.png`` and ``confusion.png``;
- ``model.safetensors`` (``torch_cnn.save``; ``torch_cnn.load`` reads it back);
- ``last.pt``: the per-epoch training checkpoint that ``--resume`` continues from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from torch_cnn._io import json_number, write_json
from torch_cnn.env import versions
from torch_cnn.train.checkpoint import CHECKPOINT_NAME
from torch_cnn.train.results import EvalResult, History

HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
CONFUSION_FILE = "confusion.png"
WEIGHTS_FILE = "model.safetensors"
RUN_FILES = (HISTORY_FILE, METRICS_FILE, CURVES_FILE, CONFUSION_FILE, WEIGHTS_FILE, CHECKPOINT_NAME)


def run_metrics(
    result: EvalResult,
    classes: list[str],
    *,
    framework: str,
    model: str,
    seconds: float,
    epoch_seconds: list[float],
    device: str,
    seed: int,
    data_dir: str,
    num_train: int,
    config: Mapping[str, Any],
    versions_: Mapping[str, str] | None = None,
    world_size: int = 1,
    backend: str | None = None,
    split: str = "test",
) -> dict[str, Any]:
    """The ``metrics.json`` record of a run (one schema for the torch and Keras scripts).

    ``world_size`` and ``backend``: how many processes trained, over which
    ``torch.distributed`` backend (``None`` for one process). ``split`` names the data the
    ``test_*`` numbers are measured on: "test" (``torch-cnn train``), or "validation" when
    ``fit`` writes the record from the validation data it was given.
    """
    return {
        "framework": framework,
        "model": model,
        "split": split,
        "test_loss": result.loss,
        "test_accuracy": result.accuracy,
        "per_class_accuracy": {
            name: json_number(acc)
            for name, acc in zip(classes, result.per_class_accuracy, strict=True)
        },
        "confusion_matrix": result.confusion,
        "seconds": seconds,
        "epoch_seconds": list(epoch_seconds),
        "device": device,
        "world_size": world_size,
        "backend": backend,
        "versions": dict(versions_ if versions_ is not None else versions()),
        "seed": seed,
        "data_dir": data_dir,
        "num_train": num_train,
        "num_test": result.num_samples,
        "config": dict(config),
    }


def _class_names(result: EvalResult, classes: Sequence[str] | None) -> list[str]:
    """``classes``, else the class indices as names ("0", "1", ...)."""
    return list(classes) if classes is not None else [str(i) for i in range(len(result.confusion))]


def write_evaluation(
    out: str | os.PathLike[str],
    result: EvalResult,
    classes: Sequence[str] | None,
    metrics: Mapping[str, Any],
    *,
    title: str,
) -> list[str]:
    """``metrics.json`` and ``confusion.png`` of an evaluation; returns their names."""
    from torch_cnn.plots import plot_confusion

    out = Path(out)
    write_json(out / METRICS_FILE, metrics)
    plot_confusion(
        result.confusion, _class_names(result, classes), out / CONFUSION_FILE, title=title
    )
    return [METRICS_FILE, CONFUSION_FILE]


def write_run_dir(
    out: str | os.PathLike[str],
    model: nn.Module,
    history: History,
    result: EvalResult | None = None,
    classes: Sequence[str] | None = None,
    metrics: Mapping[str, Any] | None = None,
    *,
    title: str,
    curves_heading: str | None = None,
) -> list[str]:
    """Write the run directory into ``out``; returns the names of the files it holds.

    ``title`` heads the confusion matrix, ``curves_heading`` the training curves.

    Always ``history.json`` (NaN, as after a diverged run, as null) and ``curves.png``;
    ``model.safetensors`` unless training stopped on a non-finite loss (its weights are not
    finite: ``last.pt`` keeps the last good epoch); ``metrics.json`` when given, with
    ``confusion.png`` when there is an evaluation. Each file is written atomically.
    """
    from torch_cnn.plots import plot_history
    from torch_cnn.weights import save

    out = Path(out)
    write_json(out / HISTORY_FILE, {k: [json_number(v) for v in vs] for k, vs in history.items()})
    plot_history(history, out / CURVES_FILE, title=curves_heading)
    if history.stopped is None:
        save(model, out / WEIGHTS_FILE)
    if result is not None and metrics is not None:
        write_evaluation(out, result, classes, metrics, title=title)
    elif metrics is not None:
        write_json(out / METRICS_FILE, metrics)
    return [name for name in RUN_FILES if (out / name).exists()]


def stopped_metrics(history: History, **fields: Any) -> dict[str, Any]:
    """The ``metrics.json`` of a run that stopped on a non-finite loss: why, and no test numbers."""
    return {
        "framework": "torch",
        "model": history.config.get("model"),
        "stopped": history.stopped,
        "test_loss": None,
        "test_accuracy": None,
        "epochs_completed": history.epochs - 1,
        "seconds": sum(history.seconds),
        "epoch_seconds": list(history.seconds),
        "versions": versions(),
        "config": dict(history.config),
        **fields,
    }


def fit_run_dir(
    out: Path, model: nn.Module, history: History, classes: Sequence[str] | None
) -> list[str]:
    """What ``fit(checkpoint_dir=out)`` leaves when it ends: the run directory, its metrics
    from the last validation (when ``fit`` was given validation data)."""
    from torch_cnn.env import describe_device

    result = history.final_eval
    config = history.config
    device = describe_device(str(config.get("device", "cpu")))
    metrics = None
    if history.stopped is not None:
        metrics, result = stopped_metrics(history, device=device), None
    elif result is not None:
        metrics = run_metrics(
            result, _class_names(result, classes), framework="torch",
            model=str(config.get("model")),
            seconds=sum(history.seconds), epoch_seconds=history.seconds, device=device,
            seed=int(config.get("seed", 0)), data_dir="", num_train=int(config.get("num_train", 0)),
            config=config, world_size=int(config.get("world_size", 1)),
            backend=config.get("backend"), split="validation",
        )  # fmt: skip
    title = f"{config.get('model')} ({'validation' if result is not None else 'training'})"
    return write_run_dir(
        out, model, history, result, classes, metrics, title=title,
        curves_heading=curves_title(config.get("model"), out, history.epochs),
    )  # fmt: skip


def curves_title(model: object, out: Path, epochs: int) -> str:
    """The heading of a run's ``curves.png``: the model, the run directory, the epochs.

    >>> curves_title("model_cifar10", Path("runs/demo"), 10)
    'model_cifar10, run runs/demo, 10 epochs'
    """
    return f"{model}, run {out}, {epochs} epoch{'' if epochs == 1 else 's'}"
