"""``torch-cnn bench``: the benchmark (see the README's Speed section)."""

from __future__ import annotations

import argparse


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from torch_cnn import bench

    bench.add_command(subparsers)
