"""The command line: ``torch-cnn`` and ``python -m torch_cnn`` are the same program."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_cnn
from torch_cnn.cli import main


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == ["model_cifar10", "model_cnn"]


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "model_cnn"]) == 0
    out = capsys.readouterr().out
    from parity_tests.helpers import SEED_LAYERS, SEED_TOTALS

    (_, shape, params) = SEED_LAYERS["model_cnn"][1]
    assert "conv2 (Conv2D)" in out and f"(None, {', '.join(map(str, shape))})" in out
    assert f"{params:,}" in out and f"Total params: {SEED_TOTALS['model_cnn']:,}" in out


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["summary", "resnet"])
    assert exc.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


@pytest.mark.slow
def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "torch_cnn", "list"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["model_cifar10", "model_cnn"]


FILES = Path(__file__).resolve().parents[1] / "parity_tests" / "files"


def test_port_keras_file_to_torch_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No TensorFlow needed: .keras → .safetensors (model inferred) → .weights.h5 → torch."""
    dst = tmp_path / "m.safetensors"
    assert main(["port", str(FILES / "model_cnn.keras"), str(dst)]) == 0
    assert "(model_cnn)" in capsys.readouterr().out
    model = torch_cnn.load(dst)
    expected = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn"), FILES / "model_cnn.keras"
    )
    for a, b in zip(model.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    h5 = tmp_path / "back.weights.h5"
    assert main(["port", str(dst), str(h5)]) == 0
    again = torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), h5)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_port_weights_file_without_layer_order_needs_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .weights.h5 as Keras wrote it before layer-name metadata (no groups for weightless
    layers, no names): only --model says where its Flatten sits."""
    import shutil

    import h5py

    src = tmp_path / "bare.weights.h5"
    shutil.copy(FILES / "model_cnn.weights.h5", src)
    with h5py.File(src, "a") as f:
        del f["layers/flatten"], f["layers/input_layer"]
        for group in ("conv2d", "conv2d_1", "dense"):
            del f[f"layers/{group}/vars"].attrs["name"]
    dst = tmp_path / "m.safetensors"
    assert main(["port", str(src), str(dst)]) == 2
    assert "pass layer_classes" in capsys.readouterr().err and not dst.exists()
    assert main(["port", str(src), str(dst), "--model", "model_cnn"]) == 0
    expected = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn"), FILES / "model_cnn.weights.h5"
    )
    for a, b in zip(
        torch_cnn.load(dst).state_dict().values(), expected.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_port_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "port",
                str(FILES / "model_cnn.keras"),
                str(tmp_path / "x.safetensors"),
                "--model",
                "model_cifar10",
            ]
        )
        == 2
    )
    assert "model_cnn.keras" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit, match="cannot port"):
        main(["port", str(FILES / "model_cnn.keras"), str(tmp_path / "x.txt")])


def test_every_command_is_registered() -> None:
    import benchmarks.cli
    from torch_cnn.cli import build_parser
    from torch_cnn.cli import training as cli_train

    parser = build_parser()
    assert parser.parse_args(["bench", "--quick"]).func is benchmarks.cli.cmd_bench
    args = parser.parse_args(["train", "--model", "model_cnn", "--out", "r"])
    assert args.func is cli_train.cmd_train
    assert parser.parse_args(["evaluate", "--checkpoint", "c"]).func is cli_train.cmd_evaluate
