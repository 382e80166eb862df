"""The command line's contract for errors: arguments checked before any work, one line on
stderr, exit status 2 for usage errors, 1 for failures, 130 when interrupted; an exception of
an unexpected type (a bug) keeps its traceback. And every command and option has help."""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torch_cnn
from tests.helpers import ROOT, small_data_dir
from torch_cnn.cli import build_parser, main, models
from torch_cnn.cli.args import plural

KERAS_FILE = str(ROOT / "parity_tests" / "files" / "model_cnn.keras")


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a usage error prints (exit status 2, raised while parsing)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1, captured.err
    return lines[0]


TRAIN = ["train", "--model", "model_cnn", "--out", "run"]
BAD_VALUES = [
    ([*TRAIN, "--epochs", "-2"], "argument --epochs: expected an integer ≥ 1; received '-2'"),
    ([*TRAIN, "--epochs", "0"], "argument --epochs: expected an integer ≥ 1; received '0'"),
    ([*TRAIN, "--epochs", "two"], "argument --epochs: expected an integer ≥ 1; received 'two'"),
    ([*TRAIN, "--batch-size", "0"], "argument --batch-size: expected an integer ≥ 1"),
    ([*TRAIN, "--lr", "nan"], "argument --lr: expected a finite number > 0; received 'nan'"),
    ([*TRAIN, "--lr", "inf"], "argument --lr: expected a finite number > 0; received 'inf'"),
    ([*TRAIN, "--lr", "0"], "argument --lr: expected a finite number > 0; received '0'"),
    ([*TRAIN, "--lr=-1e-3"], "argument --lr: expected a finite number > 0; received '-1e-3'"),
    ([*TRAIN, "--seed", "-1"], "argument --seed: expected an integer from 0 to 2**63 - 1"),
    ([*TRAIN, "--device", "bogus"], "argument --device: expected cpu, cuda or cuda:N"),
    ([*TRAIN, "--device", "meta"], "argument --device: expected cpu, cuda or cuda:N"),
    (["evaluate", "--checkpoint", "c.safetensors", "--batch-size", "0"], "--batch-size"),
    (["predict", "m.safetensors", "a.png", "--top-k", "0"], "argument --top-k: expected an"),
    (["parity", "-n", "0"], "argument -n: expected an integer ≥ 1; received '0'"),
    (["compare", "m.keras", "-n", "-5"], "argument -n: expected an integer ≥ 1; received '-5'"),
    (["summary"], "the following arguments are required: MODEL_OR_FILE"),
    (["train", "--out", "run"], "one of the arguments --model --from-keras is required"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_VALUES, ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_are_refused_while_parsing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    line = _usage_error(argv, capsys)
    assert line.startswith("torch-cnn") and " error: " in line and message in line, line


def test_cuda_without_cuda_is_refused_while_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    missing = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    line = _usage_error([*TRAIN, "--device", missing], capsys)
    assert f"argument --device: {missing!r}" in line and "cpu" in line, line


def test_plural() -> None:
    assert [plural(1, "epoch"), plural(2, "epoch"), plural(1017, "image")] == [
        "1 epoch",
        "2 epochs",
        "1,017 images",
    ]


# ---------------------------------------------------------------------------------------------
# Output paths, before training


def test_train_checks_out_before_reading_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --data-dir that does not exist is never looked at: --out is refused first."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    nodata = ["--model", "model_cnn", "--data-dir", str(tmp_path / "no-data")]
    for out, needle in (
        (afile, f"--out {afile} is a file"),
        (afile / "run", f"{afile} is a file, not a directory"),
    ):
        assert main(["train", *nodata, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "no-data" not in err and len(err.splitlines()) == 1, err
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: real(p, mode) and Path(p) != tmp_path)
    assert main(["train", *nodata, "--out", str(tmp_path / "run")]) == 2
    assert f"directory {tmp_path} is not writable" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_train_checks_from_keras_file_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nodata = ["--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "run")]
    for path, needle in (
        (tmp_path / "m.weights.h5", "expected a Keras model file"),
        (tmp_path / "m.pt", "expected a Keras model file"),
        (tmp_path / "m.keras", "no such file"),
    ):
        assert main(["train", "--from-keras", str(path), *nodata]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and str(path) in err and "no-data" not in err, err


def test_evaluate_names_a_missing_or_directory_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--checkpoint", str(tmp_path / "m.safetensors")]) == 2
    assert "m.safetensors: no such file" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_a_run_that_diverges_writes_its_history_and_fails(
    cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning rate of 1e30: NaN within the first epoch. Exit status 1, the reason (epoch and
    step) on stderr, history.json with the NaN as null, metrics.json saying why; no weights."""
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    out = tmp_path / "run"
    argv = ["train", "--model", "model_cnn", "--data-dir", str(data_dir), "--device", "cpu"]
    assert main([*argv, "--lr", "1e30", "--epochs", "3", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "the loss became nan at epoch 1, step " in captured.err
    assert "TerminateOnNaN" in captured.err and "stopped early" in captured.out
    assert "for 3 epochs on 200 images" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "history.json", "metrics.json"]
    history = json.loads((out / "history.json").read_text())
    assert history["loss"] == [None] and 0 <= history["accuracy"][0] <= 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"].startswith("the loss became nan at epoch 1")
    assert metrics["test_accuracy"] is None and metrics["epochs_completed"] == 0
    assert metrics["config"]["lr"] == 1e30


# ---------------------------------------------------------------------------------------------
# Exceptions while a command runs


def _raising(exc: BaseException) -> object:
    def command(args: argparse.Namespace) -> int:
        raise exc

    return command


MAPPED = [
    (MemoryError(), 1, "out of memory"),
    (RecursionError("maximum recursion depth exceeded"), 1, "input nested too deeply"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/m.safetensors"), 1,
     "/mnt/ro/m.safetensors: Read-only file system"),
    (OSError(errno.ENOSPC, "No space left on device", "out/x"), 1, "out/x: No space left"),
    (PermissionError(errno.EACCES, "Permission denied", "out"), 1, "out: Permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "m.keras"), 2,
     "m.keras: No such file or directory"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, "can't decode byte"),
    (torch_cnn.PortingError("m.keras: damaged"), 2, "m.keras: damaged"),
    (torch_cnn.CheckpointError("m.safetensors: no metadata"), 2, "no metadata"),
    (torch_cnn.data.Cifar10FormatError("batches.meta: bad"), 2, "batches.meta: bad"),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "status", "message"), MAPPED, ids=lambda v: type(v).__name__)
def test_exceptions_become_one_line_and_a_status(
    exc: BaseException,
    status: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(models, "_cmd_list", _raising(exc))
    assert main(["list"]) == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("torch-cnn list: error: ") and message in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_verbose_shows_the_traceback_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(models, "_cmd_list", _raising(MemoryError()))
    assert main(["list", "--verbose"]) == 1
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and err.strip().splitlines()[-1] == "torch-cnn list: error: out of memory"
    )


def test_ctrl_c_is_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(models, "_cmd_list", _raising(KeyboardInterrupt()))
    assert main(["list"]) == 130
    assert capsys.readouterr().err.strip() == "torch-cnn list: interrupted"


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("x"), AttributeError("y")])
def test_an_unexpected_exception_keeps_its_traceback(
    exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not hidden behind a one-line message: an exception type nobody expected is a bug."""
    monkeypatch.setattr(models, "_cmd_list", _raising(exc))
    with pytest.raises(type(exc)):
        main(["list"])


@pytest.mark.slow
def test_a_closed_stdout_ends_quietly() -> None:
    """``torch-cnn summary ... | head -0``: the reader is gone before anything is written."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch_cnn", "summary", "model_cifar10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == "", err


# ---------------------------------------------------------------------------------------------
# Help


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


# The benchmark's parser is benchmarks/cli.py's (torch-cnn bench imports it).
OWN_COMMANDS = sorted(set(_commands()) - {"bench"})


@pytest.mark.parametrize("name", OWN_COMMANDS)
def test_every_command_and_option_has_help(name: str) -> None:
    p = _commands()[name]
    assert p.description and len(p.description) > 40, name
    text = p.format_help()
    for marker in ("``", ":func:", ":class:", "**", "%("):
        assert marker not in text, (name, marker)
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


def test_every_command_has_a_summary_line() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert set(helps) == set(_commands()) and all(helps.values()), helps


def test_every_command_is_registered() -> None:
    import benchmarks.cli
    from torch_cnn.cli import compare, predict, training

    parser = build_parser()
    assert parser.parse_args(["bench", "--quick"]).func is benchmarks.cli.cmd_bench
    args = parser.parse_args(["train", "--model", "model_cnn", "--out", "r"])
    assert args.func is training.cmd_train and args.verbose is False
    assert parser.parse_args(["evaluate", "--checkpoint", "c"]).func is training.cmd_evaluate
    assert parser.parse_args(["compare", "m.keras", "-v"]).verbose is True
    assert parser.parse_args(["-v", "predict", "m", "a.png"]).func is predict._cmd_predict
    assert parser.parse_args(["parity"]).func is compare._cmd_parity
    assert parser.parse_args(["convert", KERAS_FILE, "o.safetensors"]).func is models._cmd_convert


def test_evaluate_takes_a_keras_file_as_its_conversion(
    cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .keras file is evaluated as the model it converts to (the same lines as its
    .safetensors); a weights-only file is refused in one line saying what to give instead."""
    zoo = ROOT / "parity_tests" / "zoo" / "residual_bn"
    saved = tmp_path / "residual_bn.safetensors"
    torch_cnn.save(torch_cnn.from_keras(zoo / "model.keras"), saved)
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    common = ["--data-dir", str(data_dir), "--device", "cpu"]
    assert main(["evaluate", "--checkpoint", str(zoo / "model.keras"), *common]) == 0
    from_keras = capsys.readouterr().out.splitlines()
    assert main(["evaluate", "--checkpoint", str(saved), *common]) == 0
    from_saved = capsys.readouterr().out.splitlines()
    assert from_keras[1:] == from_saved[1:] and from_keras[1].startswith("test_loss ")
    weights = zoo / "model.weights.h5"
    assert main(["evaluate", "--checkpoint", str(weights), *common]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no architecture" in err and "torch-cnn port" in err


def test_evaluate_refuses_a_model_cifar10_cannot_feed(
    cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sigmoid unit: CIFAR-10's ten labels do not fit; one line, before evaluating."""
    path = tmp_path / "binary.safetensors"
    zoo = ROOT / "parity_tests" / "zoo" / "head_sigmoid_one_unit" / "model.keras"
    torch_cnn.save(torch_cnn.from_keras(zoo), path)
    argv = ["evaluate", "--checkpoint", str(path), "--data-dir", str(cifar10_dir)]
    assert main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "labels must lie in 0..1" in err and str(path) in err
