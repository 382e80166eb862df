"""The command line's file commands: list, summary, convert, port (no TensorFlow needed).

``torch-cnn`` and ``python -m torch_cnn`` are the same program. Expected numbers come from
Keras: the zoo's ``summary.txt`` (Keras's own ``model.summary()``) and ``expected.npz``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import SEED_LAYERS, SEED_TOTALS, keras_summary_rows
from torch_cnn.cli import main

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "parity_tests" / "files"
ZOO = ROOT / "parity_tests" / "zoo"


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _one_error_line(err: str, *needles: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and " error: " in lines[0], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == ["model_cifar10", "model_cnn"]


@pytest.mark.slow
def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "torch_cnn", "list"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["model_cifar10", "model_cnn"]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"torch-cnn {torch_cnn.__version__}"


# ---------------------------------------------------------------------------------------------
# summary


def _printed_rows(out: str) -> list[tuple[str, str, str, str]]:
    """``(name, class, output shape, params)`` of each row of ``torch-cnn summary``."""
    row = re.compile(r"^[\s└]*(\S+) \((\w+)\)\s+(\(.*?\))\s+([\d,]+)")
    return [m.groups() for line in out.splitlines() if (m := row.match(line))]  # type: ignore[misc]


def test_summary_of_a_registered_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "model_cnn"]) == 0
    out = capsys.readouterr().out
    (_, shape, params) = SEED_LAYERS["model_cnn"][1]
    assert "conv2 (Conv2D)" in out and f"(None, {', '.join(map(str, shape))})" in out
    assert f"{params:,}" in out and f"Total params: {SEED_TOTALS['model_cnn']:,}" in out


@pytest.mark.parametrize("file", ["model.keras", "model.h5", "converted.safetensors"])
def test_summary_of_a_file_is_keras_summary(
    file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two levels of nesting, expanded: the rows Keras printed for the same model."""
    entry = ZOO / "nested_two_levels"
    path = entry / file
    if file.endswith(".safetensors"):
        path = tmp_path / file
        torch_cnn.save(torch_cnn.from_keras(entry / "model.keras"), path)
    assert main(["summary", str(path), "--expand-nested"]) == 0
    out = capsys.readouterr().out
    keras_rows = keras_summary_rows((entry / "summary.txt").read_text())
    theirs = [(n.replace("└", "").strip(), c, s, p) for n, c, s, p in keras_rows]
    assert _printed_rows(out) == theirs
    total = int(np.load(entry / "expected.npz")["params_total"])
    assert f"Total params: {total:,}" in out
    assert main(["summary", str(path)]) == 0  # not expanded: the nested model's rows go
    assert len(_printed_rows(capsys.readouterr().out)) == len(theirs) - 4


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["summary", "resnet"], ["resnet", "registered model (model_cifar10, model_cnn)"]),
        (["summary", "nowhere.keras"], ["nowhere.keras: no such file"]),
        (
            ["summary", str(ZOO / "residual_bn" / "model.weights.h5")],
            ["holds Keras weights but no architecture", "--model"],
        ),
    ],
)
def test_summary_refuses(
    argv: list[str], needles: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, *needles)


# ---------------------------------------------------------------------------------------------
# convert


@pytest.mark.parametrize(
    ("entry", "file"),
    [
        ("residual_bn", "model.keras"),
        ("nested_sequential_in_functional", "model.h5"),
        ("seed_like_cnn", "model_dir"),
        ("keras2_residual_bn", "model.h5"),
    ],
)
def test_convert_any_keras_file(
    entry: str, file: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = ZOO / entry / file, tmp_path / "out.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    out = capsys.readouterr().out
    model = torch_cnn.load(dst)
    _same_weights(model, torch_cnn.from_keras(src))
    total = int(np.load(ZOO / entry / "expected.npz")["params_total"])
    assert f"{src} → {dst}: " in out and f"{total:,} parameters" in out and "converted" in out
    data = np.load(ZOO / entry / "expected.npz")
    x = torch.from_numpy(data["inputs"]).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        y = model(x).numpy()
    assert np.abs(y - data["output/float32"]).max() <= 1e-5


def test_convert_a_seed_architecture_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dst = tmp_path / "m.safetensors"
    assert main(["convert", str(FILES / "model_cnn.keras"), str(dst), "--dtype", "float64"]) == 0
    assert "model_cnn (seed model: " in capsys.readouterr().out
    model = torch_cnn.load(dst)
    assert type(model).__name__ == "ModelCNN"
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    expected = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn", dtype=torch.float64), FILES / "model_cnn.keras"
    )
    _same_weights(model, expected)


def test_convert_warns_of_nan_weights_and_writes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = tmp_path / "nan.h5", tmp_path / "nan.safetensors"
    shutil.copy(ZOO / "residual_bn" / "model.h5", src)
    with h5py.File(src, "a") as f:
        kernel = f["model_weights/dense/dense/kernel"]
        values = kernel[()]
        values[0, 0] = np.nan
        kernel[...] = values
    assert main(["convert", str(src), str(dst)]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "NaN or Inf" in warnings[0] and str(src) in warnings[0], err
    state = torch_cnn.load(dst).state_dict()
    assert int(torch.isnan(state["dense.weight"]).sum()) == 1


def test_convert_refuses_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = str(ZOO / "residual_bn" / "model.keras")
    (tmp_path / "d.safetensors").mkdir()
    cases = [
        ([src, str(tmp_path / "out.pt")], ["out.pt", "a name ending in .safetensors"]),
        ([src, str(tmp_path / "d.safetensors")], ["d.safetensors is a directory"]),
        ([str(tmp_path / "none.keras"), str(tmp_path / "o.safetensors")], ["no such file"]),
        ([str(tmp_path / "m.txt"), str(tmp_path / "o.safetensors")], ["m.txt", ".keras, .h5"]),
        (
            [str(ZOO / "residual_bn" / "model.weights.h5"), str(tmp_path / "o.safetensors")],
            ["no architecture", "torch-cnn port"],
        ),
        (
            [str(ZOO / "unsupported_lstm" / "model.keras"), str(tmp_path / "o.safetensors")],
            ["'lstm' (LSTM)", "not supported"],
        ),
    ]
    for argv, needles in cases:
        assert main(["convert", *argv]) == 2, argv
        _one_error_line(capsys.readouterr().err, *needles)
    assert [p.name for p in tmp_path.iterdir()] == ["d.safetensors"]
    assert list((tmp_path / "d.safetensors").iterdir()) == []


def test_convert_to_an_unwritable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked before the file is read (``os.access``: as root, only a read-only mount says
    no, so the check's answer is simulated here)."""
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != tmp_path)
    dst = tmp_path / "sub" / "m.safetensors"
    assert main(["convert", str(FILES / "model_cnn.keras"), str(dst)]) == 2
    _one_error_line(capsys.readouterr().err, f"directory {tmp_path} is not writable")


def test_a_full_disk_is_a_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """ENOSPC while writing: exit status 1, one line naming the file, nothing left behind."""
    import errno

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    dst = tmp_path / "m.safetensors"
    assert main(["convert", str(FILES / "model_cnn.keras"), str(dst)]) == 1
    _one_error_line(capsys.readouterr().err, "No space left on device", str(tmp_path))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# port


def test_port_keras_file_to_torch_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No TensorFlow needed: .keras → .safetensors (model inferred) → .weights.h5 → torch."""
    dst = tmp_path / "m.safetensors"
    assert main(["port", str(FILES / "model_cnn.keras"), str(dst)]) == 0
    assert ": model_cnn (seed model" in capsys.readouterr().out
    model = torch_cnn.load(dst)
    expected = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn"), FILES / "model_cnn.keras"
    )
    _same_weights(model, expected)
    h5 = tmp_path / "back.weights.h5"
    assert main(["port", str(dst), str(h5)]) == 0
    _same_weights(model, torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), h5))


def test_port_a_converted_model_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any architecture: file → .safetensors → .weights.h5 → back into the model, bit-exact;
    a weights-only file placed by --model (a converted .safetensors, or a Keras model file)."""
    entry = ZOO / "residual_bn"
    st, h5, again = (
        tmp_path / "m.safetensors",
        tmp_path / "m.weights.h5",
        tmp_path / "a.safetensors",
    )
    assert main(["port", str(entry / "model.keras"), str(st)]) == 0
    assert main(["port", str(st), str(h5)]) == 0
    assert main(["port", str(h5), str(again), "--model", str(st)]) == 0
    _same_weights(torch_cnn.load(st), torch_cnn.load(again))
    _same_weights(torch_cnn.load(st), torch_cnn.from_keras(entry / "model.keras"))
    keras2 = tmp_path / "k2.safetensors"  # Keras 2 weights-only .h5, architecture from a file
    argv = [str(ZOO / "keras2_residual_bn" / "weights.h5"), str(keras2)]
    assert main(["port", *argv, "--model", str(entry / "model.keras")]) == 0
    _same_weights(
        torch_cnn.load(keras2), torch_cnn.from_keras(ZOO / "keras2_residual_bn" / "model.h5")
    )
    capsys.readouterr()


def test_port_weights_file_without_layer_order_needs_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .weights.h5 as Keras wrote it before layer-name metadata (no groups for weightless
    layers, no names): only --model says where its Flatten sits."""
    src = tmp_path / "bare.weights.h5"
    shutil.copy(FILES / "model_cnn.weights.h5", src)
    with h5py.File(src, "a") as f:
        del f["layers/flatten"], f["layers/input_layer"]
        for group in ("conv2d", "conv2d_1", "dense"):
            del f[f"layers/{group}/vars"].attrs["name"]
    dst = tmp_path / "m.safetensors"
    assert main(["port", str(src), str(dst)]) == 2
    _one_error_line(capsys.readouterr().err, "no architecture", "--model")
    assert not dst.exists()
    assert main(["port", str(src), str(dst), "--model", "model_cnn"]) == 0
    expected = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn"), FILES / "model_cnn.weights.h5"
    )
    _same_weights(torch_cnn.load(dst), expected)


def test_port_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keras_file = str(FILES / "model_cnn.keras")
    st = tmp_path / "m.safetensors"
    torch_cnn.save(torch_cnn.create_model("model_cnn"), st)
    cases = [
        ([keras_file, str(tmp_path / "x.safetensors"), "--model", "model_cifar10"], [keras_file]),
        ([keras_file, str(tmp_path / "x.txt")], ["x.txt", "ending in .safetensors"]),
        ([str(st), str(tmp_path / "x.h5")], ["x.h5", "ending in .weights.h5"]),
        ([str(st), str(tmp_path / "x.weights.h5"), "--model", "model_cifar10"], ["'model_cnn'"]),
        ([str(tmp_path / "m.onnx"), str(tmp_path / "x.safetensors")], ["m.onnx", "Keras file"]),
        ([str(tmp_path / "gone.keras"), str(tmp_path / "x.safetensors")], ["no such file"]),
    ]
    for argv, needles in cases:
        assert main(["port", *argv]) == 2, argv
        _one_error_line(capsys.readouterr().err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
