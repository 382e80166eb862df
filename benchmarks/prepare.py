"""The benchmark's shared files: every framework computes with the same weights.

``benchmarks.runner`` runs this module once, first, in a process of its own (it imports Keras
on TensorFlow and torch_cnn together, which the measuring processes must not)::

    python -m benchmarks.prepare --models model_cifar10,residual_bn,resnet_bn --out DIR

For each model it builds the Keras model with seeded weights (``benchmarks.converted``) and
writes into ``DIR/<model>/``:

- ``model.keras``: what the Keras processes load (TensorFlow and torch backends alike);
- ``model.onnx``: Keras's own ONNX export (``model.export(path, format="onnx")``, which goes
  through tf2onnx on TensorFlow), what onnxruntime runs. Where Keras's export fails, torch_cnn's
  model exported with ``torch.onnx.export`` instead, and the manifest says so;
- ``torch.safetensors``: the torch_cnn model, ported (a seed model) or converted
  (``torch_cnn.from_keras``), saved with ``torch_cnn.save`` (read back without TensorFlow);
- ``io.npz``: ``inputs`` (NHWC float32: real CIFAR-10 test images when ``--data-dir`` or
  ``CIFAR10_DIR`` names them, else seeded uniform ones) and ``expected``, Keras's
  ``predict_on_batch`` on them: each process reports its row's max |Δ| against it.

and ``DIR/manifest.json``, which names them per model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import atomic_write_json

IO_IMAGES = 256


def _inputs(n: int, seed: int, data_dir: str | None) -> tuple[Any, str]:
    import numpy as np

    if data_dir or os.environ.get("CIFAR10_DIR"):
        from torch_cnn import data

        root = data.resolve_data_dir(data_dir)
        test = data.load_cifar10(root).test
        x = data.to_float(test.images[:n]).permute(0, 2, 3, 1).numpy()
        return np.ascontiguousarray(x, dtype=np.float32), f"CIFAR-10 test images from {root}"
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3), dtype=np.float32), f"seeded uniform images (seed {seed})"


def _export_onnx(keras_model: Any, torch_model: Any, path: Path) -> dict[str, Any]:
    """Keras's own ONNX export; torch.onnx.export of the torch model where it fails."""
    try:
        keras_model.export(str(path), format="onnx", verbose=False)
        return {"onnx": path.name, "onnx_source": "keras export (tf2onnx)", "onnx_layout": "NHWC"}
    except Exception as exc:  # tf2onnx missing or failing: say so, export the torch side
        why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    import torch

    try:
        torch.onnx.export(torch_model, (torch.zeros(1, 3, 32, 32),), str(path), dynamo=False)
    except Exception as exc:
        return {"onnx": None, "onnx_note": f"Keras's export failed ({why}); so did torch's: {exc}"}
    return {
        "onnx": path.name,
        "onnx_source": f"torch.onnx.export of torch_cnn's model (Keras's export failed: {why})",
        "onnx_layout": "NCHW",
    }


def prepare(names: Sequence[str], out: Path, seed: int, data_dir: str | None) -> dict[str, Any]:
    """Write every model's files into ``out`` (see the module's docstring); returns the manifest."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np

    import torch_cnn
    from benchmarks.converted import build_keras

    inputs, source = _inputs(IO_IMAGES, seed, data_dir)
    manifest: dict[str, Any] = {"seed": seed, "inputs": source, "models": {}}
    for name in names:
        t0 = time.perf_counter()
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        keras_model = build_keras(keras, name, seed)
        expected = np.asarray(keras_model.predict_on_batch(inputs))  # also builds the model
        keras_model.save(folder / "model.keras")
        torch_model = torch_cnn.from_keras(keras_model).eval()  # a seed model: its own class
        torch_cnn.save(torch_model, folder / "torch.safetensors")
        np.savez(folder / "io.npz", inputs=inputs, expected=expected)
        entry: dict[str, Any] = {
            "keras": "model.keras",
            "torch": "torch.safetensors",
            "io": "io.npz",
            "params": int(keras_model.count_params()),
            "torch_class": type(torch_model).__name__,
        }
        entry |= _export_onnx(keras_model, torch_model, folder / "model.onnx")
        manifest["models"][name] = entry
        print(f"  prepared {name} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr, flush=True)
    manifest["versions"] = {"keras": keras.__version__, "torch_cnn": torch_cnn.__version__}
    atomic_write_json(out / "manifest.json", manifest)
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.prepare", description=__doc__)
    p.add_argument("--models", required=True, help="comma-separated benchmark models")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="CIFAR-10 directory for the inputs (default CIFAR10_DIR)")
    args = p.parse_args(argv)
    try:
        prepare(args.models.split(","), Path(args.out), args.seed, args.data_dir)
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
