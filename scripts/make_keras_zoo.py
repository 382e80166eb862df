"""Regenerate the Keras 3 zoo fixtures in parity_tests/zoo/ (needs TensorFlow and Keras 3).

    python scripts/make_keras_zoo.py                   # rewrite every entry's files
    python scripts/make_keras_zoo.py --check           # recompute, compare, write nothing
    python scripts/make_keras_zoo.py --only NAME ...   # only these entries

For every supported entry of ``keras_ref.zoo``, with ``seed_weights(model, SEED)``,
``parity_tests/zoo/<name>/`` holds what Keras itself writes: ``model.keras``,
``model.h5`` (legacy), ``model.weights.h5``, for ``UNZIPPED`` entries the unzipped
archive ``model_dir/``, for ``SHARDED`` ones ``model_sharded.weights.json`` with its
shards, for ``NPZ_ARCHIVE`` ones ``model_npz.keras`` (weights as ``model.weights.npz``);
``summary.txt``; and ``expected.npz`` (see ``expected``). Unsupported entries get
``model.keras`` and ``model.h5`` only. ``--check`` writes the same into a temporary
directory and compares what the files hold: configs, weights, HDF5 attributes and the
summary exactly (a ``.keras`` save date aside), outputs to the parity bars of
``torch_cnn/parity.py``. ``scripts/make_keras2_zoo.py`` reuses these functions for
``tf_keras``. FORMATS.md beside the fixtures describes every file.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_ref import zoo  # noqa: E402

ZOO_DIR = ROOT / "parity_tests" / "zoo"
SEED = 1234  # seed_weights
INPUT_SEED = 4321
N_IMAGES = 4
SUMMARY_LINE_LENGTH = 100
UNZIPPED = ("seed_like_cnn", "hard_swish_ops")
SHARDED = ("seed_like_cnn", "nested_functional_in_sequential")
NPZ_ARCHIVE = ("nested_sequential_in_functional",)
IGNORED = ("keras_version",)  # expected.npz keys --check does not compare
Writer = Callable[[ModuleType, str, Path], list[Path]]


def parity_bars() -> dict[str, float]:
    """{dtype: max |Δ|} from torch_cnn/parity.py, read without importing torch (the Keras 2
    environment has none)."""
    tree = ast.parse((ROOT / "torch_cnn" / "parity.py").read_text())
    consts = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    return {"float32": consts["FLOAT32_ATOL"], "float64": consts["FLOAT64_ATOL"]}


def zoo_inputs() -> np.ndarray:
    """NHWC float64 images in [0, 1): multiples of 1/256, exact in float32 too, so the float32
    and float64 runs see the same numbers."""
    rng = np.random.default_rng(INPUT_SEED)
    return rng.integers(0, 256, (N_IMAGES, *zoo.INPUT_SHAPE)) / 256.0


def seeded_models(k: ModuleType, name: str) -> tuple[Any, Any]:
    """The entry in float32 with seeded weights, and in float64 with the same values."""
    m32 = zoo.ZOO[name].builder(k, "float32")
    weights = zoo.seed_weights(m32, SEED)
    m64 = zoo.ZOO[name].builder(k, "float64")
    zoo.set_weights(m64, [w.astype(np.float64) if w.dtype == np.float32 else w for w in weights])
    return m32, m64


def operations(model: Any) -> list[Any]:
    """The model's layers and (Keras 3 Functional) ops nodes, inputs excluded, in graph order."""
    ops = model.operations if hasattr(model, "operations") else model.layers
    return [op for op in ops if type(op).__name__ != "InputLayer"]


def layer_outputs(k: ModuleType, model: Any, x: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """{name: output} of every operation (inference mode); a nested model's own layers follow
    it as ``<model>/<layer>``. Each operation must be called once in its model."""
    ops = operations(model)
    nodes = [op._inbound_nodes[-1] for op in ops]  # the call inside ``model``
    nested = [i for i, op in enumerate(ops) if isinstance(op, k.Model)]
    tensors = [_single(node.output_tensors) for node in nodes]
    tensors += [_single(nodes[i].input_tensors) for i in nested]
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    values = k.Model(inputs, tensors)(x, training=False)
    values = [np.asarray(v) for v in (values if isinstance(values, list | tuple) else [values])]
    out: dict[str, np.ndarray] = {}
    for i, op in enumerate(ops):
        out[prefix + op.name] = values[i]
        if i in nested:
            inner_input = values[len(ops) + nested.index(i)]
            out.update(layer_outputs(k, op, inner_input, f"{prefix}{op.name}/"))
    return out


def _single(tensors: Any) -> Any:
    """A node's one tensor (Keras 3 lists them; Keras 2 gives a lone tensor as is)."""
    if isinstance(tensors, list | tuple):
        if len(tensors) != 1:
            raise ValueError(f"expected one tensor per node. Received: {tensors}")
        return tensors[0]
    return tensors


def param_counts(model: Any) -> dict[str, int]:
    def count(ws: list[Any]) -> int:
        return int(sum(np.prod(tuple(w.shape)) for w in ws))

    trainable, frozen = count(model.trainable_weights), count(model.non_trainable_weights)
    return {"trainable": trainable, "non_trainable": frozen, "total": trainable + frozen}


def expected(k: ModuleType, name: str) -> tuple[Any, dict[str, np.ndarray]]:
    """The float32 model and its ``expected.npz`` contents: ``inputs`` (float64 NHWC),
    ``output/<dtype>`` and ``layer/<dtype>/<name>`` for float32 and float64, ``layer_names``
    and ``layer_classes`` (graph order), ``params_<kind>``, the seeds and ``keras_version``."""
    m32, m64 = seeded_models(k, name)
    x = zoo_inputs()
    data: dict[str, np.ndarray] = {"inputs": x}
    for dtype, model in (("float32", m32), ("float64", m64)):
        xd = x.astype(dtype)
        data[f"output/{dtype}"] = np.asarray(model(xd, training=False))
        for layer, value in layer_outputs(k, model, xd).items():
            data[f"layer/{dtype}/{layer}"] = value
    names = [key.split("/", 2)[2] for key in data if key.startswith("layer/float32/")]
    classes = {n: type(op).__name__ for n, op in _named_operations(k, m32)}
    data["layer_names"] = np.array(names)
    data["layer_classes"] = np.array([classes[n] for n in names])
    for kind, n in param_counts(m32).items():
        data[f"params_{kind}"] = np.array(n)
    data["weight_seed"], data["input_seed"] = np.array(SEED), np.array(INPUT_SEED)
    data["keras_version"] = np.array(k.__version__)
    return m32, data


def _named_operations(k: ModuleType, model: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for op in operations(model):
        out.append((prefix + op.name, op))
        if isinstance(op, k.Model):
            out += _named_operations(k, op, f"{prefix}{op.name}/")
    return out


def summary_text(model: Any) -> str:
    """``model.summary`` as text, SUMMARY_LINE_LENGTH wide wherever it runs: Keras 3 renders
    with rich, whose console takes its width from COLUMNS or the terminal (80 when piped) and
    crops the table to it, so COLUMNS is set for the call."""
    lines: list[str] = []
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(SUMMARY_LINE_LENGTH)
    try:
        model.summary(
            line_length=SUMMARY_LINE_LENGTH,
            expand_nested=True,
            print_fn=lambda line, **_: lines.append(line),
        )
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


def save_npz(path: Path, data: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **data)  # type: ignore[arg-type]
    path.write_bytes(buffer.getvalue())


def write_entry(k: ModuleType, name: str, out: Path) -> list[Path]:
    """Write entry ``name``'s Keras 3 files into ``out`` (created; emptied first)."""
    from keras.src.saving import saving_lib  # the npz archive has no public writer

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not zoo.ZOO[name].supported:
        model = zoo.ZOO[name].builder(k, "float32")
        zoo.seed_weights(model, SEED)
        model.save(out / "model.keras")
        model.save(out / "model.h5")
        return sorted(out.iterdir())
    model, data = expected(k, name)
    model.save(out / "model.keras")
    model.save(out / "model.h5")  # legacy HDF5
    model.save_weights(out / "model.weights.h5")
    if name in UNZIPPED:
        model.save(out / "model_dir", zipped=False)
    if name in SHARDED:
        # Shards no larger than the largest variable: several files for a tiny model.
        largest = max(int(np.prod(w.shape)) * 4 for w in model.weights)
        model.save_weights(out / "model_sharded.weights.json", max_shard_size=largest / 1024**3)
    if name in NPZ_ARCHIVE:
        saving_lib.save_model(model, str(out / "model_npz.keras"), weights_format="npz")
    (out / "summary.txt").write_text(summary_text(model))
    save_npz(out / "expected.npz", data)
    return sorted(out.iterdir())


# --- --check: what two files hold -------------------------------------------------------------


def stale_keys(
    stored: dict[str, np.ndarray], fresh: dict[str, np.ndarray], bars: dict[str, float]
) -> list[str]:
    """expected.npz keys that differ: outputs (``output/<dtype>``, ``layer/<dtype>/...``) beyond
    their dtype's bar, anything else (inputs, names, counts, seeds) at all."""
    bad = sorted((set(stored) ^ set(fresh)) - set(IGNORED))
    for key in sorted((set(stored) & set(fresh)) - set(IGNORED)):
        a, b = stored[key], fresh[key]
        parts = key.split("/")
        if parts[0] in ("output", "layer"):
            same = a.shape == b.shape and bool(np.abs(a - b).max(initial=0) <= bars[parts[1]])
        else:
            same = a.dtype == b.dtype and np.array_equal(a, b)
        if not same:
            bad.append(key)
    return bad


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    return bool(a == b)


def h5_differences(a: Any, b: Any, where: str) -> list[str]:
    """HDF5 objects (files, groups, datasets) that differ in names, attributes or values."""
    bad = []
    if sorted(a.attrs) != sorted(b.attrs) or not all(
        _same_value(a.attrs[key], b.attrs[key]) for key in a.attrs
    ):
        bad.append(f"{where}:{a.name} attributes")
    if isinstance(a, h5py.Dataset) or isinstance(b, h5py.Dataset):
        if not (isinstance(a, h5py.Dataset) and isinstance(b, h5py.Dataset)):
            return [*bad, f"{where}:{a.name} group vs dataset"]
        if not _same_value(a[()], b[()]):
            bad.append(f"{where}:{a.name} values")
        return bad
    if sorted(a) != sorted(b):
        return [*bad, f"{where}:{a.name} members {sorted(a)} vs {sorted(b)}"]
    for key in a:
        bad += h5_differences(a[key], b[key], where)
    return bad


def content_differences(
    name: str, stored: bytes, fresh: bytes, bars: dict[str, float], where: str
) -> list[str]:
    """Differences between two versions of one file, judged by its name."""
    if name == "expected.npz":
        with np.load(io.BytesIO(stored)) as a, np.load(io.BytesIO(fresh)) as b:
            keys = stale_keys({k: a[k] for k in a.files}, {k: b[k] for k in b.files}, bars)
        return [f"{where}: {key}" for key in keys]
    if name.endswith(".keras"):
        with zipfile.ZipFile(io.BytesIO(stored)) as a, zipfile.ZipFile(io.BytesIO(fresh)) as b:
            if sorted(a.namelist()) != sorted(b.namelist()):
                return [f"{where}: members {a.namelist()} vs {b.namelist()}"]
            return [
                d
                for member in a.namelist()
                for d in content_differences(
                    member, a.read(member), b.read(member), bars, f"{where}/{member}"
                )
            ]
    if name.endswith(".h5"):
        with h5py.File(io.BytesIO(stored), "r") as a, h5py.File(io.BytesIO(fresh), "r") as b:
            return h5_differences(a, b, where)
    if name.endswith(".npz"):  # model.weights.npz: pickled dicts that Keras itself wrote
        with np.load(io.BytesIO(stored), allow_pickle=True) as a:
            with np.load(io.BytesIO(fresh), allow_pickle=True) as b:
                same = sorted(a.files) == sorted(b.files) and all(
                    _same_nested(a[key].item(), b[key].item()) for key in a.files
                )
        return [] if same else [f"{where}: weights"]
    if name.endswith(".json"):
        ja, jb = _stable(json.loads(stored)), _stable(json.loads(fresh))
        if name == "metadata.json":  # carries the save date
            ja.pop("date_saved", None), jb.pop("date_saved", None)
        return [] if ja == jb else [f"{where}: JSON"]
    return [] if stored == fresh else [f"{where}: bytes"]


def _stable(obj: Any) -> Any:
    """JSON without ``shared_object_id`` (an ``id()`` Keras writes, new in every process)."""
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k != "shared_object_id"}
    if isinstance(obj, list):
        return [_stable(v) for v in obj]
    return obj


def _same_nested(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return sorted(a) == sorted(b) and all(_same_nested(a[key], b[key]) for key in a)
    return _same_value(np.asarray(a), np.asarray(b))


def _files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def entry_differences(
    k: ModuleType, name: str, stored_dir: Path, writer: Writer, bars: dict[str, float]
) -> list[str]:
    """Write entry ``name`` afresh into a temporary directory and list what differs from
    ``stored_dir``; nothing is written there."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh_dir = Path(tmp) / name
        writer(k, name, fresh_dir)
        if not stored_dir.is_dir():
            return [f"{stored_dir} is missing"]
        stored_files, fresh_files = _files(stored_dir), _files(fresh_dir)
        if stored_files != fresh_files:
            return [f"{stored_dir}: files {stored_files} vs {fresh_files}"]
        return [
            d
            for rel in stored_files
            for d in content_differences(
                Path(rel).name,
                (stored_dir / rel).read_bytes(),
                (fresh_dir / rel).read_bytes(),
                bars,
                f"{stored_dir.name}/{rel}",
            )
        ]


def run(k: ModuleType, names: list[str], dirs: dict[str, Path], writer: Writer, check: bool) -> int:
    """Write (or with ``check`` compare) each entry; 1 when anything differs."""
    bars, status = parity_bars(), 0
    for name in names:
        start = time.perf_counter()
        if check:
            bad = entry_differences(k, name, dirs[name], writer, bars)
            status |= bool(bad)
            verdict = "ok" if not bad else "DIFFERS: " + "; ".join(bad)
            print(
                f"{dirs[name].relative_to(ROOT)}: {verdict} ({time.perf_counter() - start:.1f} s)"
            )
        else:
            paths = writer(k, name, dirs[name])
            size = sum(p.stat().st_size for p in dirs[name].rglob("*") if p.is_file())
            print(
                f"wrote {dirs[name].relative_to(ROOT)}: {len(paths)} entries, {size / 1024:.0f} KiB"
                f" ({time.perf_counter() - start:.1f} s)"
            )
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the stored files")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these zoo entries only")
    args = parser.parse_args()
    import keras

    names = args.only or zoo.list_zoo()
    unknown = sorted(set(names) - set(zoo.ZOO))
    if unknown:
        parser.error(f"unknown zoo entries {unknown}. Known: {', '.join(zoo.list_zoo())}")
    return run(keras, names, {n: ZOO_DIR / n for n in names}, write_entry, args.check)


if __name__ == "__main__":
    raise SystemExit(main())
