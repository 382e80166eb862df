"""The command line: ``torch-cnn`` and ``python -m torch_cnn`` are the same program."""

from __future__ import annotations

import subprocess
import sys

import pytest

from torch_cnn.cli import main


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == ["model_cifar10", "model_cnn"]


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "model_cnn"]) == 0
    out = capsys.readouterr().out
    assert "conv2 (Conv2D)" in out and "(None, 8, 8, 20)" in out and "1,820" in out
    assert "Total params: 15,120" in out


def test_unknown_model_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["summary", "resnet"])
    assert exc.value.code == 2
    assert "invalid choice: 'resnet'" in capsys.readouterr().err


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "torch_cnn", "list"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["model_cifar10", "model_cnn"]
