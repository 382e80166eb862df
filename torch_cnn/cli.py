"""The ``torch-cnn`` command line. The only module that parses argv."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import torch

import torch_cnn


def _cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(torch_cnn.list_models()))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    print(torch_cnn.summary(torch_cnn.create_model(args.model)))
    return 0


def _parity_images(data_dir: str | None, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, str]:
    """Real CIFAR-10 test images when the data can be found (or downloaded), else seeded noise."""
    from torch_cnn import data

    try:
        root = data.resolve_data_dir(data_dir)
        images = data.load_cifar10(root).test.images[:n]
        return data.to_float(images).to(dtype), f"{len(images)} CIFAR-10 test images from {root}"
    except (OSError, ValueError) as exc:
        print(f"note: no CIFAR-10 data ({exc}); using seeded random images", file=sys.stderr)
        g = torch.Generator().manual_seed(0)
        return torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64).to(dtype), (
            f"{n} seeded random images"
        )


def _cmd_parity(args: argparse.Namespace) -> int:
    """Build each Keras reference, port it, and compare every layer's output."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras

        import keras_ref
    except ImportError as exc:
        print(
            f"torch-cnn parity needs Keras (pip install 'torch-cnn[keras]'): {exc}", file=sys.stderr
        )
        return 2
    from torch_cnn.parity import compare_with_keras

    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    x, what = _parity_images(args.data_dir, args.n, dtype)
    keras.utils.set_random_seed(args.seed)
    names = [args.model] if args.model else torch_cnn.list_models()
    status = 0
    for name in names:
        keras_model = keras_ref.build_model(name, args.dtype)
        model = torch_cnn.create_model(name, dtype=dtype)
        torch_cnn.load_keras_weights(model, keras_model)
        print(torch_cnn.summary(model), end="\n\n")
        report = compare_with_keras(model, keras_model, x)  # type: ignore[arg-type]
        print(f"Keras ({keras.__version__}) vs torch_cnn ({torch.__version__}) on {what}")
        print(report.format(), end="\n\n")
        status |= 0 if report.ok else 1
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torch-cnn", description="PyTorch reimplementations of two Keras CIFAR-10 CNNs."
    )
    parser.add_argument("--version", action="version", version=torch_cnn.__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered models")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("summary", help="a Keras-style summary of a model")
    p.add_argument("model", choices=torch_cnn.list_models())
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser(
        "parity", help="port each Keras reference model and compare every layer (needs Keras)"
    )
    p.add_argument("--model", choices=torch_cnn.list_models())
    p.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("-n", type=int, default=1017, help="number of test images (default 1017)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Keras initialisers")
    p.set_defaults(func=_cmd_parity)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.func(args)
    return status
