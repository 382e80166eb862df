"""``--accuracy``: fast mode must not buy its speed with accuracy.

Trains the model for ``ACCURACY_EPOCHS`` epochs on CIFAR-10 in default mode (``fit``'s defaults,
the parity path) and in fast mode, over several seeds, and reports both modes' test accuracy
(mean ± sd) and their difference.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks.hardware import sync
from benchmarks.torch_side import (
    RunConfig,
    Settings,
    graph_trainer,
    make_optimizer,
    tf32_allowed,
)
from torch_cnn import data
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.train import evaluate, fit, seeded_model

ACCURACY_EPOCHS = 10
ACCURACY_SEEDS = (0, 1, 2)
ACCURACY_MODES = ("default", "fast")


def train_fast(
    model: KerasStyleNet,
    train: data.Split,
    settings: Settings,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
) -> None:
    """Train ``model`` in place as fast mode does: ``fit`` with its options, or CUDA graphs."""
    batch = settings.batch_size
    if settings.cuda_graphs and device.type == "cuda":
        x = data.to_float(train.images.to(device))
        y = train.labels.to(device)
        trainer = graph_trainer(model, x, y, settings, batch)
        generator = torch.Generator(device=device).manual_seed(seed)
        for _ in range(epochs):
            trainer.epoch(len(y), generator)
        sync(device)
        return
    fit(
        model,
        train,
        epochs=epochs,
        batch_size=batch,
        optimizer=make_optimizer(settings.optimizer, model.parameters(), settings.lr(batch)),
        seed=seed,
        device=device,
        channels_last=settings.channels_last,
        bf16=settings.bf16,
        compile=settings.compile_train,
        progress=False,
    )


def train_and_test(
    config: RunConfig, mode: str, ds: data.Cifar10, *, seed: int, epochs: int
) -> tuple[float, float]:
    """(test accuracy, seconds) of one model trained ``epochs`` epochs in ``mode`` from ``seed``.

    Default: ``fit`` with its defaults (batch 32), then ``evaluate``. Fast: ``train_fast`` with
    ``config.settings("fast")``; its test pass uses the same bf16/channels_last options.
    """
    device = config.torch_device
    settings = config.settings(mode)
    model = seeded_model(config.model, seed)
    t0 = time.perf_counter()
    with tf32_allowed(settings.tf32):
        if mode == "default":
            fit(model, ds.train, epochs=epochs, seed=seed, device=device, progress=False)
            res = evaluate(model, ds.test)
        else:
            train_fast(model, ds.train, settings, epochs=epochs, seed=seed, device=device)
            res = evaluate(model, ds.test, bf16=settings.bf16, channels_last=settings.channels_last)
        sync(device)
    return res.accuracy, time.perf_counter() - t0


def summarize(test_accuracy: Sequence[float], seconds: Sequence[float]) -> dict[str, Any]:
    """One mode's runs: the accuracies, their mean and sample sd (0 for one run), the times.

    >>> s = summarize([0.5, 0.6, 0.7], [2.0, 4.0, 3.0])
    >>> round(s["mean"], 12), round(s["sd"], 12)
    (0.6, 0.1)
    """
    return {
        "test_accuracy": list(test_accuracy),
        "mean": statistics.mean(test_accuracy),
        "sd": statistics.stdev(test_accuracy) if len(test_accuracy) > 1 else 0.0,
        "seconds": list(seconds),
    }


def difference_points(default: Mapping[str, Any], fast: Mapping[str, Any]) -> float:
    """Fast mode's mean test accuracy minus default mode's, in percentage points."""
    return float(100 * (fast["mean"] - default["mean"]))


def accuracy_check(
    config: RunConfig,
    data_dir: str | Path | None = None,
    *,
    dataset: data.Cifar10 | None = None,
    seeds: Sequence[int] = ACCURACY_SEEDS,
    epochs: int = ACCURACY_EPOCHS,
) -> dict[str, Any]:
    """Test accuracy after ``epochs`` epochs on CIFAR-10, default mode against fast mode, per seed.

    ``dataset``, when given, is CIFAR-10 already loaded from ``data_dir``. The result holds
    where the data came from, fast mode's settings, each mode's ``summarize`` and
    ``difference_points``.
    """
    root = data.resolve_data_dir(data_dir)
    ds = dataset if dataset is not None else data.load_cifar10(root)
    fast = config.settings("fast")
    result: dict[str, Any] = {
        "data_dir": str(root),
        "num_train": len(ds.train),
        "num_test": len(ds.test),
        "epochs": epochs,
        "seeds": list(seeds),
        "fast_settings": fast.describe("train", fast.batch_size) | {"batch_size": fast.batch_size},
    }
    for mode in ACCURACY_MODES:
        runs = []
        for seed in seeds:
            print(f"  accuracy: {mode}, seed {seed}", file=sys.stderr, flush=True)
            runs.append(train_and_test(config, mode, ds, seed=seed, epochs=epochs))
        result[mode] = summarize([acc for acc, _ in runs], [s for _, s in runs])
    result["difference_points"] = difference_points(result["default"], result["fast"])
    return result
