"""The Keras file reader on the stored zoo (no Keras needed): every format, one tree, the seeds.

Every zoo entry (``parity_tests/zoo/*``, FORMATS.md) is read in each format it was saved in;
the weights trees must agree bit for bit, and must be the values ``keras_ref.zoo.seed_weights``
drew in the model's variable order (checked from the RNG stream alone, so a reader that
permuted arrays — a nested model's BatchNormalization statistics, say — fails). Also: Keras 2
weights-only pairing, detection by content, ``write_weights_tree`` round trips into the
layout Keras writes, and the child-process reader (its fate and its overhead).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from tests.helpers import ROOT
from torch_cnn.porting import PortingError, isolate, reader
from torch_cnn.porting.keras_files import read_keras_file, read_keras_source
from torch_cnn.porting.keras_writer import write_weights_tree
from torch_cnn.porting.reader_limits import MIB, KerasFileError, Limits

ZOO = ROOT / "parity_tests" / "zoo"
ENTRIES = sorted(p.name for p in ZOO.iterdir() if p.is_dir())
# file in an entry → the format its content must be detected as (read with the entry's
# config when it holds weights only)
FORMAT_OF = {
    "model.keras": "keras",
    "model_dir": "keras-dir",
    "model.h5": "legacy-h5",
    "model.weights.h5": "weights-h5",
    "model_sharded.weights.json": "sharded-weights-h5",
    "model_npz.keras": "keras",
    "weights.h5": "keras2-weights-h5",
}
WEIGHTS_ONLY = ("weights-h5", "sharded-weights-h5", "keras2-weights-h5")
SEED_RANGES = [(0.5, 1.5), (0.5, 2.0), (0.05, 0.5), (-0.5, 0.5), (-0.2, 0.2)]  # keras_ref.zoo._draw


def flat(tree: dict[str, Any]) -> Iterator[np.ndarray]:
    """A tree's arrays in model order (nested models in place)."""
    for value in tree.values():
        yield from flat(value) if isinstance(value, dict) else value


def assert_same_tree(got: Any, want: Any, where: str = "") -> None:
    """The same layers in the same order, arrays equal in dtype, shape and bytes."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), f"{where}: {list(got)}"
        for key in want:
            assert_same_tree(got[key], want[key], f"{where}/{key}")
        return
    assert len(got) == len(want), f"{where}: {len(got)} arrays, expected {len(want)}"
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{where}[{i}]: {a.dtype} {a.shape}"
        assert a.tobytes() == b.tobytes(), f"{where}[{i}] differs"


def first_undrawn(arrays: list[np.ndarray], seed: int) -> int | None:
    """Where ``arrays`` stop being ``seed_weights(model, seed)``'s draws, or None.

    ``rng.uniform(lo, hi, shape)`` is ``lo + (hi - lo) * rng.random(shape)`` whatever the
    range, so the stream is followed without knowing each variable's name; kernels
    (rank ≥ 2) may also be Glorot-uniform. Integer variables (counters) draw nothing.
    """
    rng = np.random.default_rng(seed)
    for i, a in enumerate(arrays):
        if a.dtype.kind != "f":
            continue
        u = rng.random(a.shape)
        ranges = list(SEED_RANGES)
        if a.ndim >= 2:
            receptive = int(np.prod(a.shape[:-2])) if a.ndim > 2 else 1
            limit = np.sqrt(6.0 / (receptive * (a.shape[-2] + a.shape[-1])))
            ranges.append((-limit, limit))
        if not any(np.array_equal((lo + (hi - lo) * u).astype(a.dtype), a) for lo, hi in ranges):
            return i
    return None


def entry_files(entry: str) -> dict[str, Path]:
    return {name: ZOO / entry / name for name in FORMAT_OF if (ZOO / entry / name).exists()}


# --------------------------------------------------------------- every zoo file


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_format_of_an_entry_reads_to_the_seeded_weights(entry: str) -> None:
    """One tree from every file of the entry, and it is the zoo's seeded draws in model order."""
    base = reader.read(ZOO / entry / "model.keras")
    assert base.format == "keras" and base.config is not None and base.weights is not None
    assert base.keras_version in ("3.15.1", "2.21.0")
    if (ZOO / entry / "expected.npz").is_file():
        seed = int(np.load(ZOO / entry / "expected.npz")["weight_seed"])
        values = list(flat(base.weights))
        assert values and first_undrawn(values, seed) is None
    files = entry_files(entry)
    assert {"model.keras", "model.h5"} <= set(files)
    for name, path in files.items():
        kind = FORMAT_OF[name]
        got = reader.read(path, config=base.config if kind in WEIGHTS_ONLY else None)
        assert got.format == kind, name
        assert got.nonfinite == []
        assert_same_tree(got.weights, base.weights, f"{entry}/{name}")
        if kind not in WEIGHTS_ONLY:
            assert got.config is not None and got.config["class_name"] == base.config["class_name"]


def test_the_draw_check_catches_arrays_out_of_order() -> None:
    """BatchNormalization's moving variance swapped with its gamma (same shape): caught."""
    tree = reader.read(ZOO / "nested_sequential_in_functional" / "model.h5").weights
    assert tree is not None
    bn = tree["block"]["batch_normalization"]
    assert len(bn) == 4 and first_undrawn(list(flat(tree)), 1234) is None
    bn[0], bn[3] = bn[3], bn[0]
    assert first_undrawn(list(flat(tree)), 1234) == 4  # conv2d_2 kernel, bias, block conv ×2


def test_weights_only_files_without_a_config_give_the_raw_store() -> None:
    got = reader.read(ZOO / "nested_functional_in_sequential" / "model.weights.h5")
    assert got.weights is None and got.store is not None
    assert sorted(got.store) == [
        "conv2d", "dense", "flatten", "functional", "functional/add",
        "functional/batch_normalization", "functional/conv2d", "functional/input_layer",
        "functional/re_lu",
    ]  # fmt: skip
    assert [a.shape for a in got.store["functional/batch_normalization"]] == [(4,)] * 4
    assert got.store_names["functional"] == "res_block"
    assert got.store_names["functional/conv2d"] == "conv2d_1"
    sharded = reader.read(ZOO / "nested_functional_in_sequential" / "model_sharded.weights.json")
    assert sharded.store is not None and sorted(sharded.store) == sorted(got.store)
    for key, arrays in got.store.items():
        assert_same_tree(sharded.store[key], arrays, key)  # layers/conv2d spans two shards


def test_a_nested_model_in_a_legacy_h5_is_regrouped_per_layer(tmp_path: Path) -> None:
    """Legacy order is trainable first: [bn, conv]'s group lists bn's moving statistics last."""
    rng = np.random.default_rng(0)
    gamma, beta, mean, var = (rng.random(3).astype("f4") for _ in range(4))
    kernel, bias = rng.random((1, 1, 3, 3)).astype("f4"), rng.random(3).astype("f4")
    layer = {
        "class_name": "Dense",
        "config": {"name": "head", "trainable": True, "dtype": "float32"},
    }
    block = {
        "class_name": "Sequential",
        "config": {
            "name": "block",
            "layers": [
                {"class_name": "BatchNormalization", "config": {"name": "bn", "trainable": True, "dtype": "float32"}},
                {"class_name": "Conv2D", "config": {"name": "conv", "trainable": True, "dtype": "float32"}},
            ],
        },
    }  # fmt: skip
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [block, layer]}}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        weights = f.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"block", b"head"])
        names = ["bn/gamma:0", "bn/beta:0", "conv/kernel:0", "conv/bias:0", "bn/moving_mean:0",
                 "bn/moving_variance:0"]  # fmt: skip
        group = weights.create_group("block")
        group.attrs["weight_names"] = np.array([n.encode() for n in names])
        for name, value in zip(names, (gamma, beta, kernel, bias, mean, var), strict=True):
            group[name] = value
        weights.create_group("head").attrs["weight_names"] = np.zeros(0)  # as Keras writes []
    tree = reader.read(path).weights
    assert_same_tree(tree, {"block": {"bn": [gamma, beta, mean, var], "conv": [kernel, bias]},
                            "head": []})  # fmt: skip


# ------------------------------------------------------- Keras 2 weights only


def test_keras2_weights_list_the_file_and_pair_with_a_config() -> None:
    d = ZOO / "keras2_nested_sequential_in_functional"
    full = reader.read(d / "model.h5")
    assert full.config is not None and full.weights is not None
    alone = reader.read(d / "weights.h5")
    assert alone.weights is None and alone.keras2_layers is not None
    with h5py.File(d / "weights.h5") as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
    assert [name for name, _ in alone.keras2_layers] == names  # file order, inputs included
    paired = reader.read(d / "weights.h5", config=full.config)
    assert_same_tree(paired.weights, full.weights)

    renamed = json.loads(json.dumps(full.config))  # the same model, built under other names
    for entry in renamed["config"]["layers"]:
        entry["config"]["name"] = entry["name"] = f"x_{entry['config']['name']}"
    by_position = reader.read(d / "weights.h5", config=renamed).weights
    assert by_position is not None and list(by_position) == [f"x_{n}" for n in full.weights]
    for a, b in zip(flat(by_position), flat(full.weights), strict=True):
        assert a.tobytes() == b.tobytes()

    extra = json.loads(json.dumps(renamed))
    extra["config"]["layers"].append(dict(extra["config"]["layers"][-1]))
    with pytest.raises(KerasFileError, match="cannot be paired"):
        reader.read(d / "weights.h5", config=extra)


def test_keras2_weights_pair_with_layer_classes_like_keras() -> None:
    d = ZOO / "keras2_seed_like_cnn"
    classes = ["Conv2D", "Conv2D", "Flatten", "Dense"]
    record = read_keras_file(d / "weights.h5", layer_classes=classes, isolate=False)
    full = read_keras_file(d / "model.h5", isolate=False)
    assert [layer.class_name for layer in record.layers] == classes
    assert [layer.name for layer in record.layers][:2] == ["conv2d", "conv2d_1"]
    for got, want in zip(record.layers, full.layers, strict=True):
        assert_same_tree(list(got.weights), list(want.weights), got.name)
    with pytest.raises(PortingError, match="pass layer_classes="):
        read_keras_file(d / "weights.h5", isolate=False)
    with pytest.raises(PortingError, match="holds 3 layers with weights"):
        read_keras_file(
            d / "weights.h5", layer_classes=["Conv2D", "Flatten", "Dense"], isolate=False
        )


# ------------------------------------------------------ detection by content


def test_the_format_is_told_by_content_not_by_name(tmp_path: Path) -> None:
    seed = ZOO / "seed_like_cnn"
    disguised = {
        "weights.h5": (seed / "model.keras", "keras"),
        "model.keras": (seed / "model.h5", "legacy-h5"),
        "model.json": (seed / "model.weights.h5", "weights-h5"),
        "model.weights.h5": (ZOO / "keras2_seed_like_cnn" / "weights.h5", "keras2-weights-h5"),
        "index.keras": (seed / "model_sharded.weights.json", "sharded-weights-h5"),
    }
    for shard in seed.glob("model_sharded_*.weights.h5"):
        shutil.copyfile(shard, tmp_path / shard.name)
    for name, (source, kind) in disguised.items():
        shutil.copyfile(source, tmp_path / name)
        assert reader.read(tmp_path / name).format == kind, name
    shutil.copytree(seed / "model_dir", tmp_path / "model.h5")
    assert reader.read(tmp_path / "model.h5").format == "keras-dir"
    (tmp_path / "notes.keras").write_text("# not a model\n")
    with pytest.raises(KerasFileError, match="neither a Keras zip archive"):
        reader.read(tmp_path / "notes.keras")


# ------------------------------------------------------------------ the writer


def h5_layout(path: Path) -> dict[str, Any]:
    """Every group and dataset: attributes, dtype, shape, bytes."""
    out: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        attrs = {k: str(v) for k, v in obj.attrs.items()}
        if isinstance(obj, h5py.Dataset):
            out[name] = (attrs, obj.dtype.str, obj.shape, obj[()].tobytes())
        else:
            out[name] = attrs

    with h5py.File(path, "r") as f:
        out["/"] = {k: str(v) for k, v in f.attrs.items()}
        f.visititems(visit)
    return out


@pytest.mark.parametrize("entry", [e for e in ENTRIES if (ZOO / e / "model.weights.h5").exists()])
def test_write_weights_tree_writes_what_keras_save_weights_wrote(
    entry: str, tmp_path: Path
) -> None:
    base = reader.read(ZOO / entry / "model.keras")
    assert base.config is not None and base.weights is not None
    out = write_weights_tree(base.weights, base.config, tmp_path / "m.weights.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.weights.h5"]
    assert_same_tree(reader.read(out, config=base.config).weights, base.weights, entry)
    keras_wrote = ZOO / entry / "model.weights.h5"
    assert h5_layout(out) == h5_layout(keras_wrote)  # groups, name attributes, datasets
    assert out.read_bytes() == keras_wrote.read_bytes()  # and the very bytes


def test_write_weights_tree_refuses_and_leaves_the_old_file(tmp_path: Path) -> None:
    base = reader.read(ZOO / "seed_like_cnn" / "model.keras")
    assert base.config is not None and base.weights is not None
    target = tmp_path / "m.weights.h5"
    target.write_bytes(b"previous")
    with pytest.raises(PortingError, match=r"name layers \['nope'\]"):
        write_weights_tree({**base.weights, "nope": []}, base.config, target)
    with pytest.raises(TypeError):
        write_weights_tree({"dense": [np.array([object()])]}, base.config, target)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.weights.h5"]
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        write_weights_tree(base.weights, base.config, tmp_path / "m.h5")


@pytest.mark.keras
@pytest.mark.slow
@pytest.mark.parametrize(
    "entry",
    ["nested_two_levels", "residual_bn", "normalization_given_and_adapted", "separable_conv"],
)
def test_keras_loads_what_write_weights_tree_writes(keras: Any, entry: str, tmp_path: Path) -> None:
    from keras_ref import zoo
    from torch_cnn.porting.graph_weights import tree_from_keras_model

    base = reader.read(ZOO / entry / "model.keras")
    assert base.config is not None and base.weights is not None
    out = write_weights_tree(base.weights, base.config, tmp_path / "m.weights.h5")
    model = zoo.build(entry)
    model.load_weights(out)
    assert_same_tree(list(flat(tree_from_keras_model(model))), list(flat(base.weights)))


# ------------------------------------------------------------ the child process


def test_the_child_reads_the_same_and_costs_a_start(record_property: Any) -> None:
    path = ZOO / "residual_bn" / "model.keras"
    start = time.perf_counter()
    here = reader.read(path)
    middle = time.perf_counter()
    result = isolate.run_reader(path)
    end = time.perf_counter()
    assert result.error is None and result.contents is not None
    assert result.contents.format == here.format and result.contents.config == here.config
    assert_same_tree(result.contents.weights, here.weights)
    fate = result.fate
    assert (fate.exit_code, fate.signal, fate.timed_out) == (0, None, False)
    assert fate.peak_rss_bytes is not None and fate.peak_rss_bytes < 200 * MIB
    overhead = (end - middle) - (middle - start)
    record_property("isolation_overhead_s", round(overhead, 3))
    record_property("child_peak_rss_mib", round(fate.peak_rss_bytes / MIB, 1))
    print(
        f"isolation overhead {overhead:.3f} s, child peak RSS {fate.peak_rss_bytes / MIB:.0f} MiB"
    )
    assert overhead < 10.0  # about 0.3 s on an idle machine; generous for a loaded one


def _fake_reader(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "fake_reader.py"
    script.write_text(f"import os, signal, subprocess, sys, time\n{body}\n")
    return script


def test_a_crashing_child_is_an_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        isolate, "READER", _fake_reader(tmp_path, "os.kill(os.getpid(), signal.SIGSEGV)")
    )
    result = isolate.run_reader(tmp_path / "x.h5")
    assert result.fate.signal == signal.SIGSEGV
    assert isinstance(result.error, KerasFileError)
    assert str(tmp_path / "x.h5") in str(result.error) and "crashed (SIGSEGV)" in str(result.error)
    with pytest.raises(PortingError, match="damaged or hostile"):
        read_keras_source(tmp_path / "x.h5")


def test_a_hanging_child_is_killed_with_its_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "grandchild.pid"
    body = (
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)"
    )
    monkeypatch.setattr(isolate, "READER", _fake_reader(tmp_path, body))
    start = time.monotonic()
    result = isolate.run_reader(tmp_path / "x.h5", timeout=1.5)
    assert time.monotonic() - start < 10
    assert result.fate.timed_out and result.fate.signal == signal.SIGKILL
    assert "took longer than 1.5 s" in str(result.error)
    grandchild = int(pid_file.read_text())
    for _ in range(100):  # the group's SIGKILL reaches it; init reaps it
        if not Path(f"/proc/{grandchild}").exists() or "Z" in _state(grandchild):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"process {grandchild} of the reader's group survived the timeout")


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and VmHWM as Linux has them")
def test_running_out_of_the_child_memory_limit_is_an_error(tmp_path: Path) -> None:
    """A dataset the caps allow (600 MiB) but the child's 384 MiB address space does not."""
    path = tmp_path / "big.weights.h5"
    shutil.copyfile(ZOO / "seed_like_cnn" / "model.weights.h5", path)
    with h5py.File(path, "a") as f:
        del f["layers/dense/vars/0"]
        f.create_dataset(
            "layers/dense/vars/0", shape=(600, 1 << 18), dtype="f4", chunks=(1, 1 << 18)
        )
    no_ratio = Limits(stored_floor=1 << 40)  # let the empty dataset through to the allocation
    result = isolate.run_reader(path, limits=no_ratio, memory_bytes=384 * MIB)
    assert result.fate.exit_code == 0 and result.fate.signal is None
    assert "ran out of memory" in str(result.error) and "384.0 MiB" in str(result.error)
    assert result.fate.peak_rss_bytes is not None and result.fate.peak_rss_bytes < 384 * MIB


def test_the_child_imports_the_reader_and_not_torch() -> None:
    """``reader.py`` run by path loads NumPy, h5py and the reader modules only."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['reader.py', '--check', {str(ZOO / 'seed_like_cnn' / 'model.h5')!r}]\n"
        "try:\n"
        f"    runpy.run_path({str(isolate.READER)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "import json\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_cnn'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    summary, modules = proc.stdout.splitlines()
    assert json.loads(summary)["format"] == "legacy-h5"
    loaded = json.loads(modules)
    assert "torch" not in loaded and all(
        m.startswith(("torch_cnn.porting", "torch_cnn._safe_pickle")) or m == "torch_cnn"
        for m in loaded
    )
    assert "torch_cnn.porting.reader_h5" in loaded and "torch_cnn._safe_pickle" in loaded


def test_a_compiled_models_optimizer_variables(tmp_path: Path) -> None:
    """``optimizer/vars/0..n`` of a ``.keras`` (the iteration count is an int64 scalar)."""
    import io
    import zipfile

    with zipfile.ZipFile(ZOO / "seed_like_cnn" / "model.keras") as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    variables = [np.array(3, "i8"), np.array(1e-3, "f4"), np.ones((4, 4, 3, 2), "f4")]
    buffer = io.BytesIO(items["model.weights.h5"])
    with h5py.File(buffer, "a") as f:
        group = f.create_group("optimizer/vars")
        group.attrs["name"] = "adam"
        for i, value in enumerate(variables):
            group[str(i)] = value
    items["model.weights.h5"] = buffer.getvalue()
    config = json.loads(items["config.json"])
    config["compile_config"] = {"optimizer": "adam", "loss": "mse"}
    items["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as zf:
        for name, data in items.items():
            zf.writestr(name, data)
    got = reader.read(tmp_path / "m.keras")
    assert got.optimizer is not None and got.compile_config == config["compile_config"]
    assert_same_tree(got.optimizer["variables"], variables)
    assert_same_tree(got.weights, reader.read(ZOO / "seed_like_cnn" / "model.keras").weights)


@pytest.mark.keras
@pytest.mark.slow
def test_a_keras_compiled_and_fitted_model(keras: Any, tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((6, 6, 3)), keras.layers.Conv2D(2, 3),
                              keras.layers.BatchNormalization(), keras.layers.Flatten(),
                              keras.layers.Dense(3)])  # fmt: skip
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 6, 6, 3)), np.ones((4, 3)), verbose=0)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    got, legacy = reader.read(tmp_path / "m.keras"), reader.read(tmp_path / "m.h5")
    assert got.optimizer is not None and got.compile_config is not None
    assert legacy.compile_config is not None and "optimizer_config" in legacy.compile_config
    want = [np.asarray(v) for v in model.optimizer.variables]
    assert_same_tree(got.optimizer["variables"], want)  # iterations, learning rate, m and v
    assert_same_tree(got.weights, legacy.weights)
    assert_same_tree(list(flat(got.weights or {})), [np.asarray(w) for w in model.weights])


def test_chunked_layer_names_and_tf_keras_2_13_store_names(tmp_path: Path) -> None:
    """``layer_names0, layer_names1`` (too long for one header message) and tf.keras 2.13's
    ``_layer_checkpoint_dependencies`` in place of ``layers`` (``H5IOStore.get``)."""
    seed = ZOO / "seed_like_cnn"
    want = reader.read(seed / "model.keras")
    legacy = tmp_path / "m.h5"
    shutil.copyfile(seed / "model.h5", legacy)
    with h5py.File(legacy, "a") as f:
        names = f["model_weights"].attrs["layer_names"]
        del f["model_weights"].attrs["layer_names"]
        f["model_weights"].attrs["layer_names0"] = names[:2]
        f["model_weights"].attrs["layer_names1"] = names[2:]
    assert_same_tree(reader.read(legacy).weights, want.weights)
    store = tmp_path / "m.weights.h5"
    shutil.copyfile(seed / "model.weights.h5", store)
    with h5py.File(store, "a") as f:
        f.move("layers", "_layer_checkpoint_dependencies")
    got = reader.read(store, config=want.config)
    assert got.format == "weights-h5"
    assert_same_tree(got.weights, want.weights)
