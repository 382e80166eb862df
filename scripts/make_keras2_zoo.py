"""Regenerate the Keras 2 (tf_keras) zoo fixtures in parity_tests/zoo/keras2_<name>/.

Runs in its own environment, never a dependency of torch-cnn or of ``make test``:

    python3 -m venv /work/venv-tfkeras
    /work/venv-tfkeras/bin/pip install tensorflow==2.21.0 tf_keras==2.21.0
    /work/venv-tfkeras/bin/python scripts/make_keras2_zoo.py           # rewrite the files
    /work/venv-tfkeras/bin/python scripts/make_keras2_zoo.py --check   # compare, write nothing

For every ``keras_ref.zoo`` entry marked ``keras2``, built by the same builder with
``import tf_keras as keras`` (``TF_USE_LEGACY_KERAS=1``) and ``seed_weights``: the legacy
``model.h5`` (``model.save``), tf_keras's own ``model.keras`` (its v3 format), the
weights-only ``weights.h5`` (``model.save_weights("weights.h5")``, what
``ModelCheckpoint(save_weights_only=True)`` writes: root ``layer_names``, per-layer
``weight_names``; a name ending in ``.weights.h5`` would select the v3 format instead),
``summary.txt`` and ``expected.npz`` computed by tf_keras, with the conventions, seeds and
``--check`` rules of ``scripts/make_keras_zoo.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkz = _load_script("make_keras_zoo")
zoo = mkz.zoo
PREFIX = "keras2_"


def write_entry(k: ModuleType, name: str, out: Path) -> list[Path]:
    """Write entry ``name``'s tf_keras files into ``out`` (created; emptied first)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model, data = mkz.expected(k, name)
    model.save(out / "model.h5")  # legacy HDF5
    model.save(out / "model.keras")  # tf_keras's v3 archive
    model.save_weights(out / "weights.h5")  # legacy weights-only HDF5
    (out / "summary.txt").write_text(mkz.summary_text(model))
    mkz.save_npz(out / "expected.npz", data)
    return sorted(out.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored files")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these zoo entries only")
    args = parser.parse_args()
    import tf_keras

    if not zoo.is_keras2(tf_keras):
        parser.error(f"tf_keras {tf_keras.__version__} is not Keras 2")
    names = args.only or zoo.list_zoo(keras2=True)
    bad = sorted(set(names) - set(zoo.list_zoo(keras2=True)))
    if bad:
        parser.error(f"not Keras 2 zoo entries: {bad}. Known: {zoo.list_zoo(keras2=True)}")
    dirs = {n: mkz.ZOO_DIR / f"{PREFIX}{n}" for n in names}
    return int(mkz.run(tf_keras, names, dirs, write_entry, args.check))


if __name__ == "__main__":
    sys.exit(main())
