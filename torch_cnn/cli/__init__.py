"""The ``torch-cnn`` command line: the only package that parses argv.

One module per command group: ``models`` (list, summary, convert, port), ``compare``
(parity, compare: need Keras), ``predict``, ``training`` (train, evaluate) and ``bench``
(the benchmark, which lives in the repository's ``benchmarks/``); ``args`` checks
arguments before any work, ``common`` holds what the commands share.

Exit status: 0 done; 1 the command ran and failed (a parity check over its tolerance, a
training run that diverged, a full or read-only disk, out of memory); 2 a usage error (an
unknown option, a bad value or file extension, an input that is missing or is not what the
command takes); 130 interrupted. Errors are one line on stderr; an exception of a type not
listed in ``main`` is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, cast

import torch_cnn
from torch_cnn import data
from torch_cnn.cli import bench, compare, models, predict, training
from torch_cnn.cli.args import (
    BROKEN_PIPE_STATUS,
    FAILURE_STATUS,
    INTERRUPTED_STATUS,
    USAGE_STATUS,
    CliError,
    Parser,
    describe,
    error_line,
)
from torch_cnn.predict import PredictError

# Errors about what the user gave (a file, a directory, a model): usage errors, one line.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    torch_cnn.PortingError,  # and ConversionError: a Keras file that cannot be read or converted
    torch_cnn.CheckpointError,
    data.Cifar10Error,
    PredictError,  # and ImageError: an image file that cannot be read or does not fit
    UnicodeDecodeError,
    FileNotFoundError,
)

DESCRIPTION = describe(
    "torch-cnn: Keras CNNs as native PyTorch. Convert any supported Keras model file, check "
    "it against Keras layer by layer, classify images, train and evaluate on CIFAR-10, and "
    "export the weights back to Keras. The two seed models (model_cnn, model_cifar10) are "
    "registered by name.",
    "  torch-cnn convert my_model.keras my_model.safetensors",
    "  torch-cnn compare my_model.keras",
    "  torch-cnn predict my_model.safetensors cat.png",
    "  torch-cnn train --from-keras my_model.keras --out runs/a",
    "  torch-cnn port runs/a/model.safetensors fine_tuned.weights.h5",
)
EPILOG = describe(
    "Environment: CIFAR10_DIR names the CIFAR-10 python-batch directory (as --data-dir); "
    "TF_CPP_MIN_LOG_LEVEL, when set, lets TensorFlow log as it says (otherwise its log lines "
    "are hidden unless --verbose).",
    "Exit status: 0 done, 1 failed (a parity check, a diverged run, a full disk), 2 usage "
    "error (bad option, value, file or extension), 130 interrupted.",
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="torch-cnn",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"torch-cnn {torch_cnn.__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show TensorFlow's log lines, and the traceback behind an error",
    )
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, metavar="COMMAND"),
    )
    models.add_commands(sub)
    compare.add_commands(sub)
    predict.add_command(sub)
    training.add_commands(sub)
    bench.add_command(sub)
    return parser


def _os_message(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _mapped(exc: BaseException) -> tuple[int, str] | None:
    """``(status, message)`` for the exceptions that end a command with one line; ``None``
    for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, CliError):
        return exc.status, str(exc)
    if isinstance(exc, INPUT_ERRORS):
        message = _os_message(exc) if type(exc) is FileNotFoundError else str(exc)
        return USAGE_STATUS, message
    if isinstance(exc, MemoryError):
        return FAILURE_STATUS, f"out of memory{f' ({exc})' if str(exc) else ''}"
    if isinstance(exc, RecursionError):
        return FAILURE_STATUS, f"input nested too deeply for Python's recursion limit ({exc})"
    if isinstance(exc, OSError):  # a read-only or full disk, a permission, an I/O error
        return FAILURE_STATUS, _os_message(exc)
    return None


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as users read them: ``warning: <message>``, not a source location."""
    print(f"warning: {' '.join(str(message).split())}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``torch-cnn ARGV``; returns the exit status (``SystemExit`` for usage errors)."""
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        if not args.verbose:
            warnings.showwarning = _one_line_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    prog = f"torch-cnn {args.command}"
    try:
        status: int = args.func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except BrokenPipeError:  # stdout closed early (`torch-cnn summary ... | head`): no message
        try:  # Python's own flush of stdout at exit would fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor
            pass
        return BROKEN_PIPE_STATUS
    except Exception as exc:
        mapped = _mapped(exc)
        if mapped is None:
            raise
        if args.verbose:
            traceback.print_exc()
        error_line(prog, mapped[1])
        return mapped[0]
    return status
