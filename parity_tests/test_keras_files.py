"""Keras files read and written without Keras, against files Keras itself writes during the run.

Every format Keras saves (``.keras``, ``.weights.h5``, legacy ``.h5``), for
both seed models, with Keras's default layer names and with custom ones
(model_cnn's are the class paths swapped, so a reader that matched names to
``layers/conv2d``, ``layers/conv2d_1`` would cross the kernels). The stored
files in ``parity_tests/files/`` come from ``scripts/make_keras_fixtures.py``
and are read in a process where TensorFlow and Keras cannot be imported.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import MODEL_NAMES, random_images
from tests.helpers import run_python
from torch_cnn.porting import (
    PortingError,
    keras_to_torch,
    keras_writer,
    record_from_keras_model,
)
from torch_cnn.porting.keras_files import read_keras_file
from torch_cnn.porting.keras_writer import write_weights_h5

FILES_DIR = Path(__file__).parent / "files"
FORMATS = (".keras", ".weights.h5", ".h5")
NAMINGS = ("default", "custom")
ATOL = 1e-5  # float32 outputs, torch against Keras
SEED = 11
N_IMAGES = 8
# The config entries porting compares (porting._expected_config).
CHECKED_KEYS = (
    "filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation",
    "use_bias", "data_format", "pool_size", "units",
)  # fmt: skip

SavedFiles = tuple[Any, dict[str, Path]]  # the seeded Keras model and {format: path}


def build_keras(keras: ModuleType, name: str, naming: str) -> Any:
    """keras_ref's model with seeded weights; ``custom`` renames every layer (same architecture)."""
    import keras_ref
    from keras_ref.weights import seeded_keras_weights, with_custom_names

    model = keras_ref.build_model(name)
    if naming == "custom":
        model = with_custom_names(model, name)
    seeded_keras_weights(model, SEED)
    return model


@pytest.fixture(scope="module")
def saved(
    keras: ModuleType, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str], SavedFiles]:
    """Keras saves each (model, naming) once, in every format, when a test first asks."""
    cache: dict[tuple[str, str], SavedFiles] = {}

    def get(name: str, naming: str) -> SavedFiles:
        if (name, naming) not in cache:
            model = build_keras(keras, name, naming)
            out = tmp_path_factory.mktemp(f"{name}_{naming}")
            paths = {ext: out / f"m{ext}" for ext in FORMATS}
            model.save(paths[".keras"])
            model.save_weights(paths[".weights.h5"])
            model.save(paths[".h5"])  # the legacy HDF5 format
            cache[name, naming] = (model, paths)
        return cache[name, naming]

    return get


def keras_names(keras_model: Any) -> list[str]:
    return [layer.name for layer in keras_model.layers if type(layer).__name__ != "InputLayer"]


def max_delta(keras_model: Any, model: torch.nn.Module) -> float:
    """max |Δ| between the Keras model and the torch model on seeded images (float32)."""
    x = random_images(N_IMAGES, SEED)
    with torch.no_grad():
        got = model(x).numpy()
    want = np.asarray(keras_model(x.permute(0, 2, 3, 1).numpy(), training=False))
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


def assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key, tensor in want.items():
        assert got[key].dtype == tensor.dtype, key
        assert torch.equal(got[key], tensor), f"{key} differs"


def normalised(value: Any) -> Any:
    return tuple(normalised(v) for v in value) if isinstance(value, list | tuple) else value


@pytest.mark.keras
@pytest.mark.parametrize("ext", FORMATS)
@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_file_ports_like_the_live_model(
    saved: Callable[[str, str], SavedFiles], name: str, naming: str, ext: str
) -> None:
    keras_model, paths = saved(name, naming)
    record = read_keras_file(paths[ext])
    live = record_from_keras_model(keras_model)
    assert record.source == str(paths[ext])
    assert [layer.class_name for layer in record.layers] == [lay.class_name for lay in live.layers]
    # .weights.h5 too: the user's names are the ``name`` attribute of each vars group.
    assert [layer.name for layer in record.layers] == keras_names(keras_model)
    if ext == ".weights.h5":
        assert record.input_shape is None
        assert all(layer.config == {} for layer in record.layers)
    else:
        assert record.input_shape == (32, 32, 3)
        for got, want in zip(record.layers, live.layers, strict=True):
            for key in set(CHECKED_KEYS) & set(want.config):
                assert normalised(got.config[key]) == normalised(want.config[key]), (got.name, key)
    for got, want in zip(record.layers, live.layers, strict=True):
        assert len(got.weights) == len(want.weights)
        for a, b in zip(got.weights, want.weights, strict=True):
            assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), got.name

    from_file = keras_to_torch(record, torch_cnn.create_model(name))
    assert_same_state(from_file, keras_to_torch(live, torch_cnn.create_model(name)))
    model = torch_cnn.load_keras_weights(torch_cnn.create_model(name), paths[ext]).eval()
    delta = max_delta(keras_model, model)
    assert delta <= ATOL, f"{name} {naming} {ext}: max |Δ| {delta:.3g} > {ATOL}"


@pytest.mark.keras
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_loads_in_keras_and_round_trips(
    saved: Callable[[str, str], SavedFiles], name: str, tmp_path: Path
) -> None:
    import keras_ref

    keras_model, paths = saved(name, "custom")
    model = torch_cnn.load_keras_weights(torch_cnn.create_model(name), paths[".keras"]).eval()
    out = write_weights_h5(model, tmp_path / f"{name}.weights.h5")
    assert out == tmp_path / f"{name}.weights.h5"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left behind

    fresh = keras_ref.build_model(name)
    fresh.load_weights(out)  # Keras's own loader
    for a, b in zip(fresh.get_weights(), keras_model.get_weights(), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)  # Keras → torch → Keras, bit for bit
    delta = max_delta(fresh, model)
    assert delta <= ATOL, f"{name}: Keras with exported weights, max |Δ| {delta:.3g} > {ATOL}"

    back = keras_to_torch(read_keras_file(out), torch_cnn.create_model(name))
    assert_same_state(back, model.state_dict())


def h5_tree(path: Path) -> dict[str, Any]:
    """Every group and dataset: kind, attributes, dtype, shape and raw bytes."""
    tree: dict[str, Any] = {}

    def attrs(obj: Any) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            tree[name] = ("dataset", attrs(obj), str(obj.dtype), obj.shape, obj[()].tobytes())
        else:
            tree[name] = ("group", attrs(obj))

    with h5py.File(path, "r") as f:
        tree["/"] = ("group", attrs(f))
        f.visititems(visit)
    return tree


@pytest.mark.keras
@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_is_what_keras_save_weights_writes(
    saved: Callable[[str, str], SavedFiles], name: str, naming: str, tmp_path: Path
) -> None:
    keras_model, paths = saved(name, naming)
    model = torch_cnn.load_keras_weights(torch_cnn.create_model(name), paths[".weights.h5"])
    input_name = next(
        (layer.name for layer in keras_model.layers if type(layer).__name__ == "InputLayer"),
        "input_layer",
    )
    ours = write_weights_h5(
        model,
        tmp_path / "torch.weights.h5",
        layer_names=keras_names(keras_model),
        model_name=keras_model.name,
        input_name=input_name,
    )
    theirs = paths[".weights.h5"]
    ours_tree, theirs_tree = h5_tree(ours), h5_tree(theirs)
    assert sorted(ours_tree) == sorted(theirs_tree)
    for key, value in theirs_tree.items():
        assert ours_tree[key] == value, key
    # Groups created in Keras's order, datasets written as Keras writes them: the same file.
    assert ours.read_bytes() == theirs.read_bytes()


# ------------------------------------------------------------------ bad files


def _edit_h5(src: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


def _edit_archive(src: Path, dst: Path, edit: Callable[[h5py.File], None]) -> Path:
    with zipfile.ZipFile(src) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    buf = io.BytesIO(members["model.weights.h5"])
    with h5py.File(buf, "a") as f:
        edit(f)
    members["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w") as zout:
        for n, data in members.items():
            zout.writestr(n, data)
    return dst


def _int_kernel(f: h5py.File) -> None:
    kernel = f["layers/conv2d/vars/0"][()]
    del f["layers/conv2d/vars/0"]
    f["layers/conv2d/vars/0"] = kernel.astype(np.int32)


def _foreign_h5(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 3), np.float32)
        f.create_group("meta").attrs["kind"] = "not keras"
    return path


def _extra_layer(keras: ModuleType, path: Path) -> Path:
    import keras_ref

    base = keras_ref.build_model("model_cnn")
    model = keras.Model(base.inputs, keras.layers.Dense(10)(base.outputs[0]))
    model.save(path)
    return path


# case → a fragment the message must hold besides the file's path
BAD_FILES = {
    "missing": "no such file",
    "truncated-keras": "BadZipFile",
    "truncated-legacy-h5": "truncated file",
    "truncated-weights-h5": "truncated file",
    "random-bytes": "neither a Keras zip archive (.keras) nor a readable HDF5 file",
    "foreign-h5": "an HDF5 file but not a Keras one",
    "other-architecture": "(MaxPooling2D); torch module 'conv2' (Conv2dSame 10→20, 3×3) of 'model_cnn'",
    "other-architecture-weights-h5": "the weights hold 3 Conv2D, 2 Dense, 1 Flatten, 2 MaxPooling2D; expected 2 Conv2D",
    "extra-layer": "the Keras model has 5 layers; torch model 'model_cnn' has 4",
    "missing-layer": "layers/conv2d is missing: Keras numbers the Conv2D layers conv2d, conv2d_1",
    "missing-vars": "'head' (Dense) at layers/dense stores 1 weight arrays; its config expects 2",
    "int-kernel": "'conv2d_1' (Conv2D) at layers/conv2d: /layers/conv2d/vars/0 has dtype int32",
    "int-kernel-in-keras": "'conv2d_1' (Conv2D) at layers/conv2d: /layers/conv2d/vars/0 has dtype int32",
}


def make_bad_file(
    case: str, keras: ModuleType, cnn: dict[str, Path], cifar: dict[str, Path], tmp: Path
) -> Path:
    """A file that must not load into model_cnn (``cnn``: its custom-named files)."""
    if case == "missing":
        return tmp / "absent.keras"
    if case.startswith("truncated-"):
        kind = case.removeprefix("truncated-")
        src = {"keras": cnn[".keras"], "legacy-h5": cnn[".h5"], "weights-h5": cnn[".weights.h5"]}
        data = src[kind].read_bytes()
        return _write(tmp / f"cut-{src[kind].name}", data[: len(data) // 2])
    if case == "random-bytes":
        return _write(tmp / "m.keras", np.random.default_rng(0).bytes(4096))
    if case == "foreign-h5":
        return _foreign_h5(tmp / "data.h5")
    if case == "other-architecture":
        return cifar[".keras"]
    if case == "other-architecture-weights-h5":
        return cifar[".weights.h5"]
    if case == "extra-layer":
        return _extra_layer(keras, tmp / "extra.keras")
    if case == "missing-layer":
        return _edit_h5(cnn[".weights.h5"], tmp / "m.weights.h5", _delete("layers/conv2d"))
    if case == "missing-vars":
        return _edit_archive(cnn[".keras"], tmp / "m.keras", _delete("layers/dense/vars/1"))
    if case == "int-kernel":
        return _edit_h5(cnn[".weights.h5"], tmp / "m.weights.h5", _int_kernel)
    assert case == "int-kernel-in-keras"
    return _edit_archive(cnn[".keras"], tmp / "m.keras", _int_kernel)


def _delete(name: str) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]

    return edit


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.keras
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_and_leaves_model_unchanged(
    keras: ModuleType, saved: Callable[[str, str], SavedFiles], case: str, tmp_path: Path
) -> None:
    _, cnn = saved("model_cnn", "custom")
    path = make_bad_file(case, keras, cnn, saved("model_cifar10", "default")[1], tmp_path)
    torch.manual_seed(0)
    model = torch_cnn.create_model("model_cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PortingError) as info:
        torch_cnn.load_keras_weights(model, path)
    message = str(info.value)
    assert str(path) in message, message
    assert BAD_FILES[case] in message, message
    assert_same_state(model.state_dict(), before)


# ------------------------------------------------ .weights.h5 layer order


def _strip_weightless(f: h5py.File) -> None:
    """What Keras before layer-name metadata wrote: no groups for weightless layers, no names."""
    for path in list(f["layers"]):
        if not len(f[f"layers/{path}/vars"]):
            del f[f"layers/{path}"]
        else:
            del f[f"layers/{path}/vars"].attrs["name"]
    del f["vars"]


@pytest.mark.keras
def test_weights_h5_order_without_and_with_layer_classes(
    saved: Callable[[str, str], SavedFiles], tmp_path: Path
) -> None:
    from keras_ref.weights import CUSTOM_NAMES

    keras_model, paths = saved("model_cifar10", "custom")
    live = keras_to_torch(
        record_from_keras_model(keras_model), torch_cnn.create_model("model_cifar10")
    )
    table = [info.keras_class for info in torch_cnn.models.ModelCifar10.layer_table]
    assert table == [
        "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"
    ]  # fmt: skip

    default = read_keras_file(paths[".weights.h5"])  # the default CNN order
    hinted = read_keras_file(paths[".weights.h5"], layer_classes=table)
    for record in (default, hinted):
        assert [layer.class_name for layer in record.layers] == table
        assert [layer.name for layer in record.layers] == list(CUSTOM_NAMES["model_cifar10"])

    # A different interleaving moves only weightless layers; porting then refuses.
    moved = ["MaxPooling2D", "Conv2D", "Conv2D", "MaxPooling2D", *table[4:]]
    record = read_keras_file(paths[".weights.h5"], layer_classes=moved)
    assert [layer.name for layer in record.layers][:4] == ["pool_a", "stem", "mid", "pool_b"]
    with pytest.raises(PortingError, match="layer 0 is Keras layer 'pool_a'"):
        keras_to_torch(record, torch_cnn.create_model("model_cifar10"))
    with pytest.raises(PortingError, match="hold 3 Conv2D, 2 Dense, 1 Flatten, 2 MaxPooling2D; "):
        read_keras_file(paths[".weights.h5"], layer_classes=[*table, "Conv2D"])

    old = _edit_h5(paths[".weights.h5"], tmp_path / "old.weights.h5", _strip_weightless)
    with pytest.raises(PortingError, match="pass layer_classes="):
        read_keras_file(old)
    record = read_keras_file(old, layer_classes=table)
    assert [layer.class_name for layer in record.layers] == table
    assert_same_state(keras_to_torch(record, torch_cnn.create_model("model_cifar10")), live)


def test_write_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = torch_cnn.create_model("model_cnn")
    target = tmp_path / "model.weights.h5"
    target.write_bytes(b"previous contents")

    def fail(f: h5py.File, *args: Any) -> None:
        f.create_group("vars")
        raise RuntimeError("disk full")

    monkeypatch.setattr(keras_writer, "_write_store", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        write_weights_h5(model, target)
    assert target.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights.h5"]
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`"):
        write_weights_h5(model, tmp_path / "model.h5")


# ------------------------------------------------------ without TensorFlow

_BLOCKED_RUN = """
import json, sys
import parity_tests.no_keras
parity_tests.no_keras.install()  # tensorflow and keras: not installed
import numpy as np, torch, torch_cnn

files, stems = sys.argv[1], sys.argv[2:]
data = np.load(f"{files}/model_cnn_expected.npz")
x = torch.from_numpy(data["inputs"]).permute(0, 3, 1, 2)
result = {"deltas": {}, "states": []}
for stem in stems:
    model = torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), f"{files}/{stem}")
    with torch.no_grad():
        result["deltas"][stem] = float(np.abs(model.eval()(x).numpy() - data["outputs"]).max())
    result["states"].append({k: v.numpy().tobytes().hex() for k, v in model.state_dict().items()})
try:
    import keras  # noqa: F401
    result["keras_importable"] = True
except ImportError:
    result["keras_importable"] = False
result["loaded"] = sorted(
    m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("tensorflow", "keras")
)
print(json.dumps({k: v for k, v in result.items() if k != "states"}))
print(json.dumps(all(s == result["states"][0] for s in result["states"])))
"""


STORED = [f"model_cnn{suffix}{ext}" for suffix in ("", "_custom") for ext in FORMATS]


@pytest.mark.slow
def test_stored_files_load_without_tensorflow() -> None:
    """Keras-written files, default and custom layer names (the convs swap Keras's default
    names), every format, read where TensorFlow and Keras cannot be imported."""
    proc = run_python("-c", _BLOCKED_RUN, str(FILES_DIR), *STORED, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines: Iterator[str] = iter(proc.stdout.strip().splitlines())
    result, same_state = json.loads(next(lines)), json.loads(next(lines))
    assert result["keras_importable"] is False
    assert result["loaded"] == []
    assert same_state is True  # all six files give the same tensors, bit for bit
    assert sorted(result["deltas"]) == sorted(STORED)
    for stem, delta in result["deltas"].items():
        assert delta <= ATOL, f"stored {stem}: max |Δ| {delta:.3g} > {ATOL}"
