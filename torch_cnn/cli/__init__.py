"""The ``torch-cnn`` command line: the only package that parses argv.

One module per command group: ``models`` (list, summary, parity, port, compare),
``training`` (train, evaluate) and ``bench`` (the benchmark, which lives in the
repository's ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch_cnn
from torch_cnn import data
from torch_cnn.cli import bench, models, training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torch-cnn", description="PyTorch reimplementations of two Keras CIFAR-10 CNNs."
    )
    parser.add_argument("--version", action="version", version=torch_cnn.__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    models.add_commands(sub)
    training.add_commands(sub)
    bench.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except (
        torch_cnn.PortingError,
        torch_cnn.CheckpointError,
        data.Cifar10Error,
        FileNotFoundError,
    ) as exc:
        print(f"torch-cnn {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return status
