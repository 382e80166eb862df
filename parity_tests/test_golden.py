"""The torch side against stored Keras outputs: no TensorFlow needed (e.g. on a GPU machine).

The files come from ``scripts/make_golden.py``; regenerate them there.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import DTYPES, MODEL_NAMES
from tests.helpers import load_script
from torch_cnn.parity import default_atol, torch_layer_outputs
from torch_cnn.porting import KerasLayer, KerasModelRecord

GOLDEN_DIR = Path(__file__).parent / "golden"


def load_golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN_DIR / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def golden_record(name: str, data: dict[str, np.ndarray]) -> KerasModelRecord:
    layers, i = [], 0
    for j, (cls, count) in enumerate(
        zip(data["layer_classes"], data["weight_counts"], strict=True)
    ):
        weights = tuple(data[f"weight_{i + n}"] for n in range(int(count)))
        layers.append(KerasLayer(f"layer_{j}", str(cls), {}, weights))
        i += int(count)
    return KerasModelRecord(f"golden file {name}.npz", tuple(layers), (32, 32, 3))


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


# The models as users get them ("auto": a float32 batch through model_cifar10 computes
# channels_last inside the model), the plain NCHW path ("contiguous") and channels_last forced
# (model_cnn's default is NCHW), all kept checked.
MEMORY_FORMATS = ["auto", "channels_last", "contiguous"]


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torch_matches_stored_keras_outputs(
    name: str, dtype: str, device: str, memory_format: str
) -> None:
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    data = load_golden(name)
    model = torch_cnn.create_model(name, dtype=DTYPES[dtype])
    torch_cnn.load_keras_weights(model, golden_record(name, data))
    model = model.to(device).eval()
    assert isinstance(model, torch_cnn.models.KerasStyleNet)
    model.memory_format = memory_format
    # Built on the CPU in the target dtype, then moved: every device sees the same bits.
    x = torch.from_numpy(data["inputs"]).to(DTYPES[dtype]).permute(0, 3, 1, 2).to(device)
    outs = torch_layer_outputs(model, x)
    atol = default_atol(DTYPES[dtype])
    for i, (info, got) in enumerate(zip(model.layer_table, outs, strict=True)):
        expected = data[f"{dtype}_layer_{i}"]
        assert got.shape == expected.shape, info.module
        delta = float(np.abs(got - expected).max())
        assert delta <= atol, f"{name} {dtype} {device}: {info.module} max |Δ| {delta:.3g} > {atol}"
    assert (outs[-1].argmax(1) == data[f"{dtype}_layer_{len(outs) - 1}"].argmax(1)).all()


def test_golden_files_are_small_and_complete() -> None:
    for name in MODEL_NAMES:
        path = GOLDEN_DIR / f"{name}.npz"
        assert path.stat().st_size < 2 * 1024 * 1024
        data = load_golden(name)
        n_layers = len(data["layer_classes"])
        for dtype in DTYPES:
            assert all(f"{dtype}_layer_{i}" in data for i in range(n_layers))


def test_golden_files_are_current(keras: ModuleType) -> None:
    """Keras recomputes the stored files: same seeded weights and inputs, same outputs (to
    each dtype's parity bar). A Keras upgrade that changed them would show here."""
    make_golden = load_script("make_golden")
    for name in MODEL_NAMES:
        stored = load_golden(name)
        assert make_golden.stale_keys(stored, make_golden.golden(name)) == [], name
        # And the check can fail: one output nudged past the float64 bar is caught.
        nudged = dict(stored, float64_layer_0=stored["float64_layer_0"] + 1e-9)
        assert make_golden.stale_keys(nudged, stored) == ["float64_layer_0"]
