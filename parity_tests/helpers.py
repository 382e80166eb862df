"""Shared helpers for the parity suite: seeded Keras weights and float64 Keras."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

import torch_cnn

ROOT = Path(__file__).resolve().parents[1]
MODEL_NAMES = torch_cnn.list_models()
# Layer names no Keras default would give, some of them defaults of *other* layers
# (model_cnn's convs swap conv2d and conv2d_1): a reader that went by names would fail.
CUSTOM_NAMES = {
    "model_cnn": ("conv2d_1", "conv2d", "flat", "head"),
    "model_cifar10": ("stem", "pool_a", "mid", "pool_b", "top", "flat", "hidden", "logits"),
}
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def with_custom_names(keras: ModuleType, model: Any, name: str) -> Any:
    """A clone of keras_ref's ``name`` model whose layers carry ``CUSTOM_NAMES[name]``."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    new = dict(zip([layer.name for layer in layers], CUSTOM_NAMES[name], strict=True))

    def rename(layer: Any) -> Any:
        return type(layer).from_config({**layer.get_config(), "name": new[layer.name]})

    return keras.models.clone_model(model, clone_function=rename)


def seeded_keras_weights(keras_model: Any, seed: int) -> list[np.ndarray]:
    """Glorot-uniform kernels and non-zero biases from a seeded NumPy RNG, set on ``keras_model``.

    Non-zero biases matter: Keras's zero default would hide a bias that was not copied.
    """
    rng = np.random.default_rng(seed)
    weights = []
    for w in keras_model.get_weights():
        if w.ndim > 1:
            fan_in, fan_out = int(np.prod(w.shape[:-1])), w.shape[-1]
            if w.ndim == 4:  # conv (kh, kw, in, out): Keras's receptive-field fans
                fan_out = w.shape[0] * w.shape[1] * w.shape[3]
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, w.shape).astype(w.dtype))
        else:
            weights.append(rng.uniform(-0.1, 0.1, w.shape).astype(w.dtype))
    keras_model.set_weights(weights)
    return weights


def build_seeded_pair(
    keras: ModuleType, name: str, dtype: str, seed: int = 0
) -> tuple[Any, torch_cnn.models.KerasStyleNet]:
    """A Keras reference model with seeded weights and the torch model ported from it."""
    import keras_ref

    keras_model = keras_ref.build_model(name, dtype)
    seeded_keras_weights(keras_model, seed)
    model = torch_cnn.create_model(name, dtype=DTYPES[dtype])
    torch_cnn.load_keras_weights(model, keras_model)
    assert isinstance(model, torch_cnn.models.KerasStyleNet)
    return keras_model, model.eval()


def random_images(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded uniform [0, 1) images, NCHW, made on the CPU (so every device sees the same bits)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64).to(dtype)


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
