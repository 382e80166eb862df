"""Helpers shared by the tests in tests/ (never import one test module from another)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from torch_cnn import data

ROOT = Path(__file__).resolve().parents[1]
KEYS = ["loss", "accuracy", "val_loss", "val_accuracy"]  # fit's history, with validation


def subset(split: data.Split, n: int) -> data.Split:
    """The first ``n`` images of ``split``."""
    return data.Split(split.images[:n], split.labels[:n])


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal nested states: tensors bit for bit (dtype included), everything else by ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where}: max |Δ| {(a.double() - b.double()).abs().max()}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def small_data_dir(src: Path, dst: Path, per_batch: int = 40, test: int = 120) -> Path:
    """Real CIFAR-10 images in the python-batch layout, fewer of them (a faster CLI run)."""
    dst.mkdir()
    for name in (*data.TRAIN_FILES, data.TEST_FILE):
        with (src / name).open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
        n = test if name == data.TEST_FILE else per_batch
        small = {b"batch_label": batch[b"batch_label"], b"labels": batch[b"labels"][:n]}
        small[b"data"] = batch[b"data"][:n]
        with (dst / name).open("wb") as f:
            pickle.dump(small, f, protocol=2)
    shutil.copy(src / data.META_FILE, dst / data.META_FILE)
    return dst


def run_python(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh process at the repository root (on its ``PYTHONPATH``), in
    ``env`` (default: this process's); the result, whatever the exit status."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def load_script(name: str) -> ModuleType:
    """``scripts/NAME.py`` imported as a module (the scripts are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
