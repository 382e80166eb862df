"""``torch_cnn.from_keras`` on the zoo: every supported Keras model in every file format.

The files and Keras's outputs are stored in ``parity_tests/zoo/`` (``scripts/make_keras_zoo.py``,
``scripts/make_keras2_zoo.py``), so the first half runs without TensorFlow: each file is
converted and every layer's output is compared with Keras's (float32 ≤ 1e-5, float64 ≤ 1e-12,
the first diverging layer named), the parameter counts and summary rows with Keras's, and
the weights through every round trip. The second half (``keras``) checks live Keras models
on the real CIFAR-10 test images and that exported weights load in Keras.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import DTYPES, keras_summary_rows
from torch_cnn.models import KerasGraph
from torch_cnn.parity import default_atol, graph_final, graph_layer_outputs
from torch_cnn.summary import summarize

ZOO_DIR = Path(__file__).parent / "zoo"
ENTRIES = sorted(p.parent.name for p in ZOO_DIR.glob("*/expected.npz"))
KERAS3 = [e for e in ENTRIES if not e.startswith("keras2_")]
KERAS2 = [e for e in ENTRIES if e.startswith("keras2_")]
UNSUPPORTED = sorted(
    p.name for p in ZOO_DIR.iterdir() if p.is_dir() and p.name.startswith("unsupported_")
)
# The files holding an architecture, per entry (which exist is the zoo's business).
MODEL_FILES = ("model.keras", "model_dir", "model.h5")


def _model_files(entry: str) -> list[str]:
    return [f for f in MODEL_FILES if (ZOO_DIR / entry / f).exists()]


CASES = [(e, f) for e in ENTRIES for f in _model_files(e)]


def expected(entry: str) -> dict[str, np.ndarray]:
    with np.load(ZOO_DIR / entry / "expected.npz") as f:
        return {k: f[k] for k in f.files}


def convert(entry: str, file: str, dtype: str = "float32") -> KerasGraph:
    model = torch_cnn.from_keras(ZOO_DIR / entry / file, dtype=DTYPES[dtype])
    assert isinstance(model, KerasGraph), f"{entry}/{file}: {type(model).__name__}"
    return model


def stored_inputs(data: dict[str, np.ndarray], dtype: str) -> torch.Tensor:
    return torch.from_numpy(data["inputs"]).permute(0, 3, 1, 2).contiguous().to(DTYPES[dtype])


def check_against_stored(model: KerasGraph, data: dict[str, np.ndarray], dtype: str) -> float:
    """Every top-level layer's output, then the model's, against Keras's; the worst |Δ|."""
    x = stored_inputs(data, dtype)
    atol = default_atol(DTYPES[dtype])
    ours = graph_layer_outputs(model, x)
    worst = 0.0
    for name in map(str, data["layer_names"]):
        key = f"layer/{dtype}/{name}"
        if name not in ours or key not in data:
            continue  # a nested model's own layers: its output is compared as one layer
        got, want = ours[name], data[key]
        assert got.shape == want.shape, f"{name}: torch {got.shape}, Keras {want.shape}"
        delta = float(np.abs(got.astype(np.float64) - want.astype(np.float64)).max(initial=0))
        assert delta <= atol, f"first layer over the bar: {name!r}, max |Δ| {delta:.3g} > {atol:g}"
        worst = max(worst, delta)
    final = graph_final(model, x)
    delta = float(np.abs(final.astype(np.float64) - data[f"output/{dtype}"]).max())
    assert delta <= atol, f"model output max |Δ| {delta:.3g} > {atol:g}"
    return max(worst, delta)


@pytest.mark.parametrize(("entry", "file"), CASES)
def test_every_file_converts_to_keras_outputs(entry: str, file: str) -> None:
    data = expected(entry)
    model = convert(entry, file)
    assert not model.training, "from_keras returns the model in eval mode"
    worst = check_against_stored(model, data, "float32")
    print(f"{entry}/{file} float32 max |Δ| {worst:.2e}")


@pytest.mark.parametrize("entry", ENTRIES)
def test_float64(entry: str) -> None:
    data = expected(entry)
    worst = check_against_stored(convert(entry, "model.keras", "float64"), data, "float64")
    print(f"{entry} float64 max |Δ| {worst:.2e}")


@pytest.mark.parametrize("entry", ENTRIES)
def test_parameter_counts_and_summary_rows_are_keras(entry: str) -> None:
    data = expected(entry)
    s = summarize(convert(entry, "model.keras"), expand_nested=True)
    assert (s.total, s.trainable, s.non_trainable) == (
        int(data["params_total"]), int(data["params_trainable"]),
        int(data["params_non_trainable"]),
    )  # fmt: skip
    keras_rows = keras_summary_rows((ZOO_DIR / entry / "summary.txt").read_text())
    ours = [(r.name.replace("└", "").strip(), r.class_name, r.output_shape, f"{r.params:,}")
            for r in s.rows]  # fmt: skip
    theirs = [(n.replace("└", "").strip(), c, shape, p) for n, c, shape, p in keras_rows]
    assert ours == theirs


@pytest.mark.parametrize("entry", KERAS3)
def test_weights_round_trip_is_bit_exact(entry: str, tmp_path: Path) -> None:
    """file → torch → .weights.h5 → torch: the same tensors; the written file reads back as
    the original's weights."""
    model = convert(entry, "model.keras")
    out = torch_cnn.export_keras_weights(model, tmp_path / "back.weights.h5")
    again = torch_cnn.convert.from_config(model.keras_config)
    torch_cnn.load_keras_weights(again, out)
    _same_state(model, again)
    stored = torch_cnn.convert.from_config(model.keras_config)
    torch_cnn.load_keras_weights(stored, ZOO_DIR / entry / "model.weights.h5")
    _same_state(model, stored)


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("entry", ENTRIES)
def test_save_and_load_round_trip(entry: str, tmp_path: Path) -> None:
    model = convert(entry, "model.keras")
    path = torch_cnn.save(model, tmp_path / "m.safetensors")
    loaded = torch_cnn.load(path)
    assert isinstance(loaded, KerasGraph) and not loaded.training
    _same_state(model, loaded)
    x = stored_inputs(expected(entry), "float32")
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


WEIGHT_FILES = [
    (e, f)
    for e in ENTRIES
    for f in ("model.weights.h5", "model_sharded.weights.json", "weights.h5")
    if (ZOO_DIR / e / f).exists()
]


@pytest.mark.parametrize(("entry", "file"), WEIGHT_FILES)
def test_weights_only_files_load_into_the_converted_model(entry: str, file: str) -> None:
    """Keras 3 ``.weights.h5`` (plain and sharded) and Keras 2's ``save_weights`` ``.h5``: placed by
    the model's own layer order, as Keras's ``load_weights`` does."""
    reference = convert(
        entry, "model.keras" if (ZOO_DIR / entry / "model.keras").exists() else "model.h5"
    )
    model = torch_cnn.convert.from_config(
        reference.keras_config, keras_version=reference.keras_version
    )
    torch_cnn.load_keras_weights(model, ZOO_DIR / entry / file)
    _same_state(reference, model)


@pytest.mark.parametrize("entry", UNSUPPORTED)
def test_unsupported_models_are_refused_by_name(entry: str) -> None:
    reason = {
        "unsupported_lstm": "LSTM",
        "unsupported_lambda": "Lambda",
        "unsupported_custom_layer": "ChannelScale",
        "unsupported_two_inputs": "2 inputs",
        "unsupported_two_outputs": "2 outputs",
    }[entry]
    with pytest.raises(torch_cnn.ConversionError, match=reason):
        torch_cnn.from_keras(ZOO_DIR / entry / "model.keras")


# ---------------------------------------------------------------------------------------------
# Deliberately wrong converters must be caught by the same comparison


WRONG = {
    "leaky_relu_default_slope": ("LeakyReLU", "torch's slope 0.01"),
    "bn_custom_eps_momentum": ("BatchNormalization", "torch's epsilon 1e-5"),
    "avgpool_same_excludes_padding": ("AveragePooling2D", "padding counted in the mean"),
    "concat_axes": ("Concatenate", "the wrong axis"),
    "dense_on_map": ("Dense", "applied to the wrong axis of a map"),
    "reshape_after_dense": ("Reshape", "done in NCHW order"),
    "depthwise_multiplier2": ("DepthwiseConv2D", "kernel reshaped (mult, in)"),
}


@pytest.fixture
def wrong_converter(request: pytest.FixtureRequest) -> Iterator[str]:
    """Swap one registered converter for a wrong one for the test, then restore it."""
    from parity_tests import wrong_converters
    from torch_cnn.convert import registry

    entry = request.param
    cls = WRONG[entry][0]
    original = registry._LAYERS[cls]
    registry.register_keras_layer(cls, replace=True)(wrong_converters.WRONG[cls])
    try:
        yield entry
    finally:
        registry._LAYERS[cls] = original


@pytest.mark.parametrize("wrong_converter", sorted(WRONG), indirect=True)
def test_a_wrong_converter_is_caught(wrong_converter: str) -> None:
    entry = wrong_converter
    model = convert(entry, "model.keras")
    with pytest.raises(
        (AssertionError, RuntimeError)
    ):  # wrong values, or shapes that no longer fit
        check_against_stored(model, expected(entry), "float32")


# ---------------------------------------------------------------------------------------------
# Live Keras: real images, exports Keras loads


def _live(keras: ModuleType, entry: str, dtype: str) -> Any:
    from keras_ref import zoo

    model = zoo.build(entry, dtype)
    zoo.seed_weights(model, int(expected(entry)["weight_seed"]))
    return model


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("entry", KERAS3)
def test_real_images_against_live_keras(
    keras: ModuleType, real_test_images: torch.Tensor, entry: str, dtype: str
) -> None:
    """All the real test images: every layer within the bar, the same top-1 on every image."""
    from torch_cnn.parity import compare_with_keras

    keras_model = _live(keras, entry, dtype)
    model = torch_cnn.from_keras(keras_model, dtype=DTYPES[dtype])
    report = compare_with_keras(model, keras_model, real_test_images.to(DTYPES[dtype]))
    assert report.ok, report.format()


@pytest.mark.parametrize("entry", KERAS3)
def test_exported_weights_load_in_keras(keras: ModuleType, entry: str, tmp_path: Path) -> None:
    """torch → .weights.h5 → Keras's own load_weights → Keras computes what torch computes."""
    keras_model = _live(keras, entry, "float32")
    model = torch_cnn.from_keras(keras_model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)  # different from what Keras holds, so the load must happen
    path = torch_cnn.export_keras_weights(model, tmp_path / "t.weights.h5")
    keras_model.load_weights(path)
    x = stored_inputs(expected(entry), "float32")
    theirs = np.asarray(keras_model(x.permute(0, 2, 3, 1).numpy(), training=False))
    assert np.abs(graph_final(model, x) - theirs).max() <= default_atol(torch.float32)
