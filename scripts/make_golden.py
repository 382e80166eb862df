"""Regenerate the stored Keras outputs in parity_tests/golden/ (needs TensorFlow).

    python scripts/make_golden.py            # rewrite the files
    python scripts/make_golden.py --check    # recompute and compare, write nothing

Each ``<model>.npz`` holds seeded float32 weights in Keras layout, seeded
random inputs (NHWC) and Keras's per-layer outputs in float32 and float64, so
the torch side is checked where TensorFlow is not installed (a GPU machine).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras_ref  # noqa: E402
from keras_ref.weights import seeded_keras_weights  # noqa: E402
from torch_cnn.parity import default_atol, keras_layer_outputs  # noqa: E402

GOLDEN_DIR = ROOT / "parity_tests" / "golden"
N_IMAGES = 2
SEED = 2024


def golden(name: str) -> dict[str, np.ndarray]:
    model = keras_ref.build_model(name)
    weights = seeded_keras_weights(model, SEED)
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    x = np.random.default_rng(SEED + 1).random((N_IMAGES, 32, 32, 3))
    out: dict[str, np.ndarray] = {
        "layer_classes": np.array([type(layer).__name__ for layer in layers]),
        "weight_counts": np.array([len(layer.get_weights()) for layer in layers]),
        "inputs": x,
        "keras_version": np.array(keras.__version__),
    }
    for i, w in enumerate(weights):
        out[f"weight_{i}"] = w
    for dtype in ("float32", "float64"):
        m = keras_ref.build_model(name, dtype)
        m.set_weights([w.astype(dtype) for w in weights])
        for i, o in enumerate(keras_layer_outputs(m, x.astype(dtype))):
            out[f"{dtype}_layer_{i}"] = o
    return out


def stale_keys(stored: dict[str, np.ndarray], fresh: dict[str, np.ndarray]) -> list[str]:
    """Keys whose stored value no longer matches a fresh computation: the seeded weights,
    inputs and structure exactly, the outputs to the parity bar of their dtype."""
    atol = {"float32": default_atol(torch.float32), "float64": default_atol(torch.float64)}
    ignored = {"keras_version"}
    bad = sorted((set(stored) ^ set(fresh)) - ignored)
    for key in sorted((set(stored) & set(fresh)) - ignored):
        a, b = stored[key], fresh[key]
        dtype = key.split("_layer_")[0]
        if dtype in atol:
            same = a.shape == b.shape and bool(np.abs(a - b).max() <= atol[dtype])
        else:
            same = np.array_equal(a, b)
        if not same:
            bad.append(key)
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored files")
    args = parser.parse_args()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    status = 0
    for name in sorted(keras_ref.MODELS):
        data = golden(name)
        path = GOLDEN_DIR / f"{name}.npz"
        if args.check:
            with np.load(path) as f:
                bad = stale_keys({k: f[k] for k in f.files}, data)
            print(f"{path}: {'ok' if not bad else 'DIFFERS in ' + ', '.join(bad)}")
            status |= bool(bad)
        else:
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **data)  # type: ignore[arg-type]
            os.replace(tmp, path)
            print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
