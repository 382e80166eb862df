"""Regenerate the small Keras files in parity_tests/files/ (needs TensorFlow).

    python scripts/make_keras_fixtures.py            # rewrite the files
    python scripts/make_keras_fixtures.py --check    # rebuild in a temp dir and compare

Keras itself writes ``model_cnn.keras``, ``model_cnn.weights.h5`` and the
legacy ``model_cnn.h5`` of seed 000's ``model_cnn`` with seeded weights
(non-zero biases), and the same three as ``model_cnn_custom.*`` with every
layer renamed (``parity_tests.helpers.CUSTOM_NAMES``: the convs swap Keras's
default names); ``model_cnn_expected.npz`` holds seeded inputs (NHWC) and
Keras's outputs for them (the same for both namings). ``parity_tests/test_keras_files.py`` reads them in
a process where TensorFlow and Keras cannot be imported. The archives carry a
save date, so ``--check`` compares what the files hold (every layer, config
and weight, bit for bit), not their bytes. model_cifar10's files (~1 MB each)
are not stored; the tests write those with Keras at run time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras_ref  # noqa: E402
from keras_ref.weights import seeded_keras_weights, with_custom_names  # noqa: E402
from torch_cnn.porting.keras_files import read_keras_file  # noqa: E402

FILES_DIR = ROOT / "parity_tests" / "files"
NAME = "model_cnn"
FORMATS = (".keras", ".weights.h5", ".h5")
NAMINGS = ("", "_custom")  # file-name suffixes: Keras's default layer names, custom ones
SEED = 7
N_IMAGES = 2


def write_fixtures(out: Path) -> list[Path]:
    """Save the seeded Keras model in every format, and its outputs, under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in NAMINGS:
        model = keras_ref.build_model(NAME)
        if suffix:
            model = with_custom_names(model, NAME)
        seeded_keras_weights(model, SEED)
        for ext in FORMATS:
            path = out / f"{NAME}{suffix}{ext}"
            if ext == ".weights.h5":
                model.save_weights(path)
            else:
                model.save(path)  # ".h5": the legacy HDF5 format
            paths.append(path)
    x = np.random.default_rng(SEED + 1).random((N_IMAGES, 32, 32, 3), dtype=np.float32)
    expected = out / f"{NAME}_expected.npz"
    np.savez(
        expected,
        inputs=x,
        outputs=np.asarray(model(x, training=False)),
        keras_version=np.array(keras.__version__),
    )
    return [*paths, expected]


def _stable(obj: Any) -> Any:
    """A config without ``shared_object_id`` (an ``id()`` Keras writes, new in every process)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k != "shared_object_id"}
    if isinstance(obj, list | tuple):
        return [_stable(v) for v in obj]
    return obj


def same_contents(a: Path, b: Path) -> bool:
    """Whether two Keras files describe the same layers, configs and weights (bit for bit)."""
    if a.suffix == ".npz":
        with np.load(a) as fa, np.load(b) as fb:
            keys = [k for k in fa.files if k != "keras_version"]
            return set(fa.files) == set(fb.files) and all(
                np.array_equal(fa[k], fb[k]) for k in keys
            )
    ra, rb = read_keras_file(a), read_keras_file(b)
    return (
        ra.input_shape == rb.input_shape
        and len(ra.layers) == len(rb.layers)
        and all(
            (la.name, la.class_name, _stable(la.config))
            == (lb.name, lb.class_name, _stable(lb.config))
            and len(la.weights) == len(lb.weights)
            and all(
                wa.dtype == wb.dtype and np.array_equal(wa, wb)
                for wa, wb in zip(la.weights, lb.weights, strict=True)
            )
            for la, lb in zip(ra.layers, rb.layers, strict=True)
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored files")
    args = parser.parse_args()
    if not args.check:
        for path in write_fixtures(FILES_DIR):
            print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")
        return 0
    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in write_fixtures(Path(tmp)):
            stored = FILES_DIR / fresh.name
            ok = stored.is_file() and same_contents(stored, fresh)
            print(f"{stored.relative_to(ROOT)}: {'ok' if ok else 'DIFFERS'}")
            status |= not ok
    return status


if __name__ == "__main__":
    raise SystemExit(main())
