"""The Keras zoo fixtures (parity_tests/zoo/) are current, load back in Keras 3, and reproduce
their stored outputs; every zoo entry builds. Regenerate them with ``scripts/make_keras_zoo.py``
(and ``scripts/make_keras2_zoo.py`` in the tf_keras environment for ``keras2_*``);
``parity_tests/zoo/FORMATS.md`` says what each file holds.

What Keras 3.15.1 cannot read back is asserted too (``UNREADABLE``): its own legacy ``.h5`` of
a model with ops nodes, its own ``.keras`` with ``model.weights.npz``, every tf_keras
``.keras``, and tf_keras ``.h5`` files holding a TFOpLambda or a nested model; a tf_keras
``hard_sigmoid`` read by Keras 3 computes Keras 3's formula.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest

from tests.helpers import load_script

pytestmark = pytest.mark.keras

ZOO_DIR = Path(__file__).parent / "zoo"
ENTRY_DIRS = sorted(p.name for p in ZOO_DIR.iterdir() if p.is_dir())
KERAS3_DIRS = [d for d in ENTRY_DIRS if not d.startswith("keras2_")]
SUPPORTED_DIRS = [d for d in ENTRY_DIRS if (ZOO_DIR / d / "expected.npz").is_file()]
# Entries fully checked (--check logic and every file) in the fast run; the rest are slow.
FAST = ("seed_like_cnn", "nested_sequential_in_functional", "hard_swish_ops")
MAX_PARAMS = 50_000
MAX_FILE_BYTES = 300_000
MAX_ZOO_BYTES = 10_000_000
UNSUPPORTED = {
    "unsupported_lstm": "LSTM",
    "unsupported_lambda": "Lambda",
    "unsupported_custom_layer": "ChannelScale",
    "unsupported_two_inputs": "two inputs",
    "unsupported_two_outputs": "two outputs",
}
# (entry dir, file) → the error Keras 3.15.1 raises reading it. A tf_keras .keras names its
# Functional class by module tf_keras.src.engine.functional (its Sequential, by "keras", loads).
UNREADABLE = {
    ("hard_swish_ops", "model.h5"): "Unknown layer: 'Relu6'",
    ("ops_scalar_arith", "model.h5"): "Unknown layer: 'TrueDivide'",
    ("activation_layers_smooth", "model.h5"): "Unknown layer: 'Gelu'",
    ("nested_sequential_in_functional", "model_npz.keras"): "Object arrays cannot be loaded",
    ("keras2_ops_scalar_arith", "model.h5"): "Unknown layer: 'TFOpLambda'",
    ("keras2_nested_sequential_in_functional", "model.h5"): "loops or disconnected nodes",
    **{
        (f"keras2_{name}", "model.keras"): "Could not locate class 'Functional'"
        for name in (
            "activations_keras2_vs_3", "nested_sequential_in_functional", "ops_scalar_arith",
            "residual_bn", "seed_like_cnn",
        )
    },
}  # fmt: skip
# Read by Keras 3 with Keras 3's semantics: its outputs are the Keras 3 fixture's, not these.
KERAS3_SEMANTICS = {"keras2_activations_keras2_vs_3": "activations_keras2_vs_3"}


def model_files(entry: str) -> list[str]:
    """What Keras reads in an entry's directory: archives, directories, weight files (a sharded
    set by its .json index)."""
    names = []
    for path in sorted((ZOO_DIR / entry).iterdir()):
        if path.name in ("expected.npz", "summary.txt") or "_0000" in path.name:
            continue
        names.append(path.name)
    return names


FILES = [(e, f) for e in ENTRY_DIRS for f in model_files(e)]


def _slow_unless(fast: bool) -> Any:
    return () if fast else (pytest.mark.slow,)


def _file_params() -> list[Any]:
    return [
        pytest.param(e, f, id=f"{e}/{f}", marks=_slow_unless(e.removeprefix("keras2_") in FAST))
        for e, f in FILES
    ]


@pytest.fixture(scope="module")
def mkz(keras: ModuleType) -> ModuleType:
    """scripts/make_keras_zoo.py, whose functions write and compare the fixtures."""
    return load_script("make_keras_zoo")


@pytest.fixture(scope="module")
def zoo(mkz: ModuleType) -> ModuleType:
    return mkz.zoo  # type: ignore[no-any-return]


def expected(entry: str) -> dict[str, np.ndarray]:
    with np.load(ZOO_DIR / entry / "expected.npz") as f:
        return {k: f[k] for k in f.files}


def load(keras: ModuleType, zoo: ModuleType, entry: str, name: str) -> Any:
    """The stored file read by Keras 3: a whole model, or weights loaded into the zoo's build."""
    path = ZOO_DIR / entry / name
    if name.endswith((".weights.h5", ".weights.json")) or name == "weights.h5":
        model = zoo.build(entry.removeprefix("keras2_"))
        model.load_weights(path)
        return model
    safe = entry != "unsupported_lambda"  # a Lambda's bytecode loads only when asked for
    custom = zoo.custom_objects(keras)
    return keras.saving.load_model(path, custom_objects=custom, compile=False, safe_mode=safe)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# --- The registry and the directory agree ------------------------------------------------------


def test_every_zoo_entry_has_its_fixtures(zoo: ModuleType, mkz: ModuleType) -> None:
    assert KERAS3_DIRS == zoo.list_zoo()
    assert sorted(d for d in ENTRY_DIRS if d.startswith("keras2_")) == [
        f"keras2_{n}" for n in zoo.list_zoo(keras2=True)
    ]
    assert zoo.list_zoo(supported=False) == sorted(UNSUPPORTED)
    assert len(zoo.list_zoo(supported=True)) == 44
    assert set(zoo.list_zoo(keras2=True)) <= set(zoo.list_zoo(supported=True))
    assert {e.family for e in zoo.ZOO.values()} == set(zoo.FAMILIES)
    for name in mkz.UNZIPPED:
        assert (ZOO_DIR / name / "model_dir" / "config.json").is_file()
    for name in mkz.SHARDED:
        index = json.loads((ZOO_DIR / name / "model_sharded.weights.json").read_text())
        shards = {s for files in index["weight_map"].values() for s in files}
        assert len(shards) >= 2 and all((ZOO_DIR / name / s).is_file() for s in shards)
    for name in mkz.NPZ_ARCHIVE:
        with zipfile.ZipFile(ZOO_DIR / name / "model_npz.keras") as z:
            assert "model.weights.npz" in z.namelist()


def test_zoo_fits_its_size_budget() -> None:
    files = [p for p in ZOO_DIR.rglob("*") if p.is_file()]
    biggest = max(files, key=lambda p: p.stat().st_size)
    assert biggest.stat().st_size < MAX_FILE_BYTES, biggest
    assert sum(p.stat().st_size for p in files) < MAX_ZOO_BYTES


@pytest.mark.parametrize(
    "entry", [pytest.param(e, marks=_slow_unless(e in FAST)) for e in KERAS3_DIRS]
)
def test_entry_builds_as_stored(
    keras: ModuleType, zoo: ModuleType, mkz: ModuleType, entry: str
) -> None:
    """Every entry builds in float32 and float64; a supported one takes one 32×32×3 image, gives
    one output, stays small, and has the stored layer names and parameter counts."""
    model = zoo.build(entry)
    assert model.count_params() < MAX_PARAMS
    if not zoo.ZOO[entry].supported:
        return
    assert tuple(model.input_shape) == (None, 32, 32, 3) and len(model.outputs) == 1
    stored = expected(entry)
    names = [name for name, _ in mkz._named_operations(keras, model)]
    assert names == stored["layer_names"].tolist()
    for kind, n in mkz.param_counts(model).items():
        assert int(stored[f"params_{kind}"]) == n, kind
    assert {w.dtype for w in zoo.build(entry, "float64").weights} <= {"float64", "int64"}


def test_unsupported_entries_are_stored_and_what_they_say(
    keras: ModuleType, zoo: ModuleType
) -> None:
    for entry, what in UNSUPPORTED.items():
        assert model_files(entry) == ["model.h5", "model.keras"], entry
        model = load(keras, zoo, entry, "model.keras")
        classes = {type(layer).__name__ for layer in model.layers}
        if what == "two inputs":
            assert len(model.inputs) == 2
        elif what == "two outputs":
            assert len(model.outputs) == 2
        else:
            assert what in classes, (entry, classes)
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(ZOO_DIR / "unsupported_lambda" / "model.keras")


# --- Current: the --check logic -----------------------------------------------------------------


@pytest.mark.parametrize(
    "entry", [pytest.param(e, marks=_slow_unless(e in FAST)) for e in KERAS3_DIRS]
)
def test_fixtures_are_current(keras: ModuleType, mkz: ModuleType, entry: str) -> None:
    """scripts/make_keras_zoo.py --check for one entry: a fresh write matches the stored files."""
    bad = mkz.entry_differences(keras, entry, ZOO_DIR / entry, mkz.write_entry, mkz.parity_bars())
    assert not bad, bad


def test_check_catches_stale_fixtures(keras: ModuleType, mkz: ModuleType, tmp_path: Path) -> None:
    """--check can fail: an output moved past the float32 bar, a weight moved by one ulp, a
    padding changed in the config, a summary line changed; an output moved within it passes."""
    entry, bars = "seed_like_cnn", mkz.parity_bars()
    stored = tmp_path / entry

    def differences(edit: Any) -> list[str]:
        shutil.rmtree(stored, ignore_errors=True)
        shutil.copytree(ZOO_DIR / entry, stored)
        edit()
        return mkz.entry_differences(keras, entry, stored, mkz.write_entry, bars)  # type: ignore[no-any-return]

    def nudge_output(delta: float) -> None:
        data = expected(entry)
        data["layer/float32/conv2d_1"][0, 0, 0, 0] += delta
        mkz.save_npz(stored / "expected.npz", data)

    def nudge_weight() -> None:
        with h5py.File(stored / "model.weights.h5", "r+") as f:
            kernel = f["layers/dense/vars/0"]
            kernel[0, 0] = np.nextafter(kernel[0, 0], np.float32(np.inf))

    def change_padding() -> None:
        (stored / "model_dir" / "config.json").write_text(
            (stored / "model_dir" / "config.json").read_text().replace('"same"', '"valid"', 1)
        )

    def change_summary() -> None:
        (stored / "summary.txt").write_text((stored / "summary.txt").read_text() + "x\n")

    assert differences(lambda: nudge_output(0.5 * bars["float32"])) == []
    assert differences(lambda: nudge_output(2 * bars["float32"])) == [
        f"{entry}/expected.npz: layer/float32/conv2d_1"
    ]
    assert differences(nudge_weight) == [f"{entry}/model.weights.h5:/layers/dense/vars/0 values"]
    assert differences(change_padding) == [f"{entry}/model_dir/config.json: JSON"]
    assert differences(change_summary) == [f"{entry}/summary.txt: bytes"]


# --- Every stored file, read by Keras 3 -------------------------------------------------------


@pytest.mark.parametrize(("entry", "name"), _file_params())
def test_stored_file_reproduces_expected(
    keras: ModuleType, zoo: ModuleType, mkz: ModuleType, entry: str, name: str
) -> None:
    """Keras 3 reads the file and reproduces every stored layer output (float32), and the
    float64 build with its weights reproduces the float64 outputs; or fails as UNREADABLE says."""
    error = UNREADABLE.get((entry, name))
    if error is not None:
        with pytest.raises((ValueError, TypeError), match=error):
            load(keras, zoo, entry, name)
        return
    model = load(keras, zoo, entry, name)
    if entry in UNSUPPORTED:
        return
    bars = mkz.parity_bars()
    data = expected(entry)
    x = data["inputs"]
    if entry in KERAS3_SEMANTICS:  # Keras 2's hard_sigmoid, computed by Keras 3
        got = np.asarray(model(x.astype("float32")))
        assert max_diff(got, data["output/float32"]) > 1e-2
        data = expected(KERAS3_SEMANTICS[entry])
        assert max_diff(got, data["output/float32"]) <= bars["float32"]
        return
    if not entry.startswith("keras2_"):  # tf_keras layer names are not Keras 3's
        outs = mkz.layer_outputs(keras, model, x.astype("float32"))
        assert sorted(outs) == sorted(data["layer_names"].tolist())
        for layer, value in outs.items():
            assert max_diff(value, data[f"layer/float32/{layer}"]) <= bars["float32"], layer
    assert (
        max_diff(np.asarray(model(x.astype("float32"))), data["output/float32"]) <= bars["float32"]
    )
    m64 = zoo.build(entry.removeprefix("keras2_"), "float64")
    weights = model.get_weights()
    zoo.set_weights(m64, [w.astype(np.float64) if w.dtype == np.float32 else w for w in weights])
    assert max_diff(np.asarray(m64(x)), data["output/float64"]) <= bars["float64"]


def test_npz_archive_members_are_pickles(mkz: ModuleType) -> None:
    """Keras 3.15.1's weights_format="npz" stores each layer's variables as a pickled dict of
    keras.src.backend.Variable objects; NumPy refuses them without allow_pickle (as Keras does
    when loading), so a reader must refuse the file rather than unpickle it."""
    for name in mkz.NPZ_ARCHIVE:
        with zipfile.ZipFile(ZOO_DIR / name / "model_npz.keras") as z:
            inner = zipfile.ZipFile(z.open("model.weights.npz"))
            assert {"__root__.npy", "layers/dense.npy"} <= set(inner.namelist())
            for member in inner.namelist():
                with inner.open(member) as f:
                    assert np.lib.format.read_magic(f) == (1, 0)
                    _, _, dtype = np.lib.format.read_array_header_1_0(f)
                assert dtype == np.dtype(object), member
            assert b"keras.src.backend" in inner.read("layers/dense.npy")


# --- seed_weights and keras.applications --------------------------------------------------------


def test_seed_weights_leaves_no_default(zoo: ModuleType) -> None:
    model = zoo.build("residual_bn")
    values = zoo.seed_weights(model, 3)
    by_name = {w.path: v for w, v in zip(model.weights, values, strict=True)}
    for path, value in by_name.items():
        assert np.all(value != 0), path
        if path.endswith("moving_variance"):
            assert value.min() >= 0.5 and value.max() <= 2.0 and np.all(value != 1), path
    again = zoo.seed_weights(zoo.build("residual_bn"), 3)
    other = zoo.seed_weights(zoo.build("residual_bn"), 4)
    assert all(np.array_equal(a, b) for a, b in zip(values, again, strict=True))
    assert not any(np.array_equal(a, b) for a, b in zip(values, other, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("MobileNetV2", 2_270_794),
        ("EfficientNetB0", 4_062_381),
        ("MobileNetV3Small", 1_540_218),
        ("VGG16", 33_638_218),
        ("ConvNeXtTiny", 27_827_818),
    ],
)
def test_applications_build_small(zoo: ModuleType, name: str, params: int) -> None:
    model = zoo.applications_model(name)
    assert tuple(model.input_shape) == (None, 32, 32, 3)
    assert tuple(model.output_shape) == (None, 10)
    assert model.count_params() == params
    variances = [np.asarray(w) for w in model.weights if w.path.endswith("moving_variance")]
    assert bool(variances) == (name not in ("VGG16", "ConvNeXtTiny"))  # no BatchNormalization
    assert all(v.min() >= 0.5 and v.max() <= 2.0 for v in variances)
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    assert np.isfinite(np.asarray(model(x, training=False))).all()
