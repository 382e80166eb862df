"""``torch-cnn compare``: a Keras file against its port, layer by layer, with an exit status."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from parity_tests.helpers import build_seeded_pair
from torch_cnn import porting
from torch_cnn.cli import main


@pytest.fixture(scope="module")
def keras_file(keras: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras_model, _ = build_seeded_pair(keras, "model_cifar10", "float32", seed=3)
    path = tmp_path_factory.mktemp("compare") / "model.keras"
    keras_model.save(path)
    return path


def test_compare_on_real_images(
    keras_file: Path, cifar10_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(keras_file), "--data-dir", str(cifar10_dir), "-n", "64"]) == 0
    out = capsys.readouterr().out
    assert "(model_cifar10) on 64 CIFAR-10 test images" in out
    rows = [line for line in out.splitlines() if line.rstrip().endswith(("ok", "FAIL"))]
    assert len(rows) == 8 and all(r.rstrip().endswith("ok") for r in rows)
    assert "top-1 agreement: 1.0000" in out


def _statuses(out: str) -> dict[str, str]:
    """Keras layer class + torch module → the row's status, from compare's table."""
    rows = [line.split() for line in out.splitlines() if "(None" in line]
    return {f"{r[0]} {r[1]}": r[-1] for r in rows}


@pytest.mark.parametrize("fmt", [".keras", ".h5", ".weights.h5"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compare_every_format_and_dtype(
    keras_file: Path, tmp_path: Path, fmt: str, dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """float64 too: a saved model's layers stay float32, so compare computes in float64 itself."""
    import keras

    path = keras_file
    if fmt != ".keras":
        path = tmp_path / f"model{fmt}"
        loaded = keras.saving.load_model(keras_file, compile=False)
        (loaded.save_weights if fmt == ".weights.h5" else loaded.save)(path)
    model_args = ["--model", "model_cifar10"] if fmt == ".weights.h5" else []
    assert main(["compare", str(path), "-n", "16", "--dtype", dtype, *model_args]) == 0
    statuses = _statuses(capsys.readouterr().out)
    assert len(statuses) == 8 and set(statuses.values()) == {"ok"}, statuses


def test_compare_fails_on_a_bad_port(
    keras_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(porting.KERNEL_TO_TORCH, "Dense", lambda k, chw: k.T)  # no permutation
    assert main(["compare", str(keras_file), "-n", "16"]) == 1
    out = capsys.readouterr().out
    assert "seeded random images" in out
    statuses = list(_statuses(out).values())
    # Everything before the first Dense agrees; from it on, every layer is off.
    assert statuses[:6] == ["ok"] * 6 and statuses[6:] == ["FAIL", "FAIL"], out
