"""Arguments checked before any work: the parser, value types, input and output paths.

Every refusal here is a usage error: exit status 2 and one line on stderr naming the
argument, what was received and what was expected (``torch-cnn train: error: argument
--epochs: expected an integer ≥ 1; received '-2'``).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import torch

USAGE_STATUS = 2  # argparse's own: bad options, values, extensions, missing inputs
FAILURE_STATUS = 1  # the command ran and failed: a parity check, a diverged run, a full disk
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report Ctrl-C
BROKEN_PIPE_STATUS = 141  # 128 + SIGPIPE: the reader of stdout went away (`| head`)

KERAS_MODEL_SUFFIXES = (".keras", ".h5")  # a model file (or an unzipped .keras directory)
KERAS_WEIGHTS_SUFFIXES = (".weights.h5", ".weights.json")  # weights only
TORCH_SUFFIX = ".safetensors"
DTYPES = {"float32": torch.float32, "float64": torch.float64}  # --dtype's choices


class CliError(Exception):
    """A command that ends with one line on stderr and ``status`` (2: usage, 1: failure)."""

    def __init__(self, message: str, status: int = USAGE_STATUS) -> None:
        super().__init__(message)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``torch-cnn train: error: ...``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_STATUS, f"{self.prog}: error: {message}\n")


HELP_WIDTH = 78


def describe(*paragraphs: str) -> str:
    """Help text: each paragraph filled to the help width; lines indented by two spaces
    (examples) kept as they are, consecutive ones together."""
    blocks: list[str] = []
    for text in paragraphs:
        if text.startswith("  ") and blocks and blocks[-1].startswith("  "):
            blocks[-1] += "\n" + text
        elif text.startswith("  "):
            blocks.append(text)
        else:
            blocks.append(textwrap.fill(" ".join(text.split()), HELP_WIDTH, break_on_hyphens=False))
    return "\n\n".join(blocks)


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,  # the top-level flag's value stands unless given here
        help="show TensorFlow's log lines, and the traceback behind an error",
    )
    return common


COMMON_OPTIONS = _common_options()


def command(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    summary: str,
    description: Sequence[str],
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` for ``torch-cnn --help``, ``description`` (paragraphs, see
    ``describe``) for its own help, the common options, and ``func`` to run it."""
    p = subparsers.add_parser(
        name,
        help=summary,
        description=describe(*description),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[COMMON_OPTIONS],
    )
    p.set_defaults(func=func)
    return p


def plural(n: int, word: str, many: str | None = None) -> str:
    """``plural(1, "epoch")`` → ``'1 epoch'``; ``plural(1017, "image")`` → ``'1,017 images'``."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


# ---------------------------------------------------------------------------------------------
# Value types: argparse reports "argument --epochs: <the message>"


def positive_int(text: str) -> int:
    """An integer ≥ 1 (epochs, batch sizes, image counts, top-k)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1; received {text!r}")
    return value


def seed(text: str) -> int:
    """A seed: an integer in ``0 .. 2**63 - 1`` (what ``torch.manual_seed`` takes)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**63 - 1; received {text!r}"
        )
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate): ``nan``, ``inf``, 0 and negatives refused."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0; received {text!r}")
    return value


DEVICE_TYPES = ("cpu", "cuda", "mps")


def device(text: str) -> str:
    """``cpu``, ``cuda``, ``cuda:N`` (or ``mps``), refused unless this machine has it."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise argparse.ArgumentTypeError(
            f"expected cpu, cuda or cuda:N (a GPU index); received {text!r}"
        )
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
            raise argparse.ArgumentTypeError(
                f"{text!r}: CUDA is not available here (torch {torch.__version__}, {built}, "
                "no GPU visible); use --device cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(
                f"{text!r}: this machine has {plural(count, 'GPU')} (cuda:0 to cuda:{count - 1})"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available here; use --device cpu")
    return text


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device",
        type=device,
        help="cpu, cuda or cuda:N (default: cuda when available, else cpu)",
    )


def add_dtype(p: argparse.ArgumentParser, help_text: str) -> None:
    """``--dtype float32|float64``, float32 by default (``DTYPES[args.dtype]``: the torch dtype)."""
    p.add_argument("--dtype", choices=list(DTYPES), default="float32", help=help_text)


def add_data_dir(p: argparse.ArgumentParser, default: str) -> None:
    """``--data-dir DIR``, a CIFAR-10 python-batch directory; ``default`` says where it is found
    without it."""
    p.add_argument(
        "--data-dir", metavar="DIR", help=f"CIFAR-10 python-batch directory (default: {default})"
    )


# ---------------------------------------------------------------------------------------------
# Paths: inputs that exist, outputs that can be written, by their extensions


def has_suffix(path: str | os.PathLike[str], suffixes: Sequence[str]) -> bool:
    return os.fspath(path).lower().endswith(tuple(suffixes))


def is_keras_path(path: str | os.PathLike[str]) -> bool:
    """A Keras file by its name, or a directory (an unzipped ``.keras`` archive)."""
    return has_suffix(path, (*KERAS_MODEL_SUFFIXES, *KERAS_WEIGHTS_SUFFIXES)) or os.path.isdir(path)


def is_weights_only_path(path: str | os.PathLike[str]) -> bool:
    """Named as Keras names weights-only files (``save_weights`` refuses other names)."""
    return has_suffix(path, KERAS_WEIGHTS_SUFFIXES)


def existing(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` if something is there, else a usage error naming it."""
    p = Path(path)
    if not p.exists():
        raise CliError(f"{p}: no such {what}")
    return p


def expect_suffix(path: str | os.PathLike[str], suffixes: Sequence[str], what: str) -> None:
    if not has_suffix(path, suffixes):
        raise CliError(f"{path}: expected {what} (a name ending in {' or '.join(suffixes)})")


def _nearest_existing(path: Path) -> Path:
    for parent in [path, *path.absolute().parents]:
        if parent.exists():
            return parent
    return Path("/")  # pragma: no cover - the root exists


def _writable_dir(directory: Path, for_what: Path) -> None:
    if not directory.is_dir():
        raise CliError(f"{for_what}: {directory} is a file, not a directory; cannot write there")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CliError(f"{for_what}: directory {directory} is not writable")


def output_file(path: str | os.PathLike[str], suffixes: Sequence[str], what: str) -> Path:
    """An output file that can be written: its extension, not a directory, a writable place."""
    p = Path(path)
    expect_suffix(p, suffixes, what)
    if p.is_dir():
        raise CliError(f"{p} is a directory; expected the path of {what} to write")
    _writable_dir(_nearest_existing(p.parent), p)
    return p


def output_dir(path: str | os.PathLike[str]) -> Path:
    """A run directory that exists and is writable, or can be created (nothing is created)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CliError(f"--out {p} is a file; expected a run directory (new or existing)")
    _writable_dir(_nearest_existing(p), p)
    return p


def error_line(prog: str, message: str) -> None:
    """``prog: error: message`` on stderr, as one line (a multi-line message is joined)."""
    print(f"{prog}: error: {' '.join(message.split())}", file=sys.stderr)
