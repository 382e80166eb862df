"""The ``torch-cnn`` command line. The only module that parses argv."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

import torch_cnn
from torch_cnn import cli_train, data
from torch_cnn.models import KerasStyleNet


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


KERAS_SUFFIXES = (".keras", ".weights.h5", ".h5")
TORCH_SUFFIXES = (".safetensors",)


def _is_keras_file(path: str) -> bool:
    return path.endswith(KERAS_SUFFIXES)


def _port_keras_file(
    path: str, model_name: str | None, dtype: torch.dtype | None = None
) -> torch.nn.Module:
    """The torch model a Keras file holds: ``--model``'s, else the one its config names.

    Given a model, ``load_keras_weights`` reads the path itself, so the model's layer order
    places a ``.weights.h5`` that records none.
    """
    from torch_cnn.keras_files import read_keras_file
    from torch_cnn.porting import infer_model_name

    if model_name:
        return torch_cnn.load_keras_weights(torch_cnn.create_model(model_name, dtype=dtype), path)
    record = read_keras_file(path)
    model = torch_cnn.create_model(infer_model_name(record), dtype=dtype)
    return torch_cnn.load_keras_weights(model, record)


def _cmd_port(args: argparse.Namespace) -> int:
    """Keras file → torch checkpoint, or torch checkpoint → .weights.h5, by the extensions."""
    from torch_cnn import keras_files

    src, dst = str(args.src), str(args.dst)
    if _is_keras_file(src) and dst.endswith(TORCH_SUFFIXES):
        model = _port_keras_file(src, args.model)
        assert isinstance(model, KerasStyleNet)
        name = model.name
        torch_cnn.save(model, dst)
    elif src.endswith(TORCH_SUFFIXES) and dst.endswith(".weights.h5"):
        model = torch_cnn.load(src)
        if args.model and args.model != model.name:
            raise torch_cnn.PortingError(f"{src} holds {model.name!r}, not {args.model!r}")
        name = model.name
        keras_files.write_weights_h5(model, dst)
    else:
        raise SystemExit(
            f"torch-cnn port: cannot port {src} to {dst}: give a Keras file "
            f"({', '.join(KERAS_SUFFIXES)}) and a .safetensors destination, or a .safetensors "
            "file and a .weights.h5 destination"
        )
    print(f"{src} → {dst} ({name})")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    """Load a Keras file with Keras, port it with torch_cnn's reader, compare every layer."""
    keras, keras_ref = _import_keras("compare")
    from torch_cnn.parity import compare_with_keras

    path = str(args.keras_file)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    model = _port_keras_file(path, args.model, dtype)  # torch_cnn's own reader, no Keras
    assert isinstance(model, KerasStyleNet)
    name = model.name
    if path.endswith(".weights.h5"):  # weights only: the architecture comes from keras_ref
        keras_model = keras_ref.build_model(name, args.dtype)
        keras_model.load_weights(path)
    else:
        keras_model = keras.saving.load_model(path, compile=False)
        if args.dtype != "float32":
            # A saved model keeps its layers' dtype policy (float32): the file's weights go
            # into keras_ref's model of that dtype, so Keras computes in it too. (The file's
            # architecture was checked against that model's when torch_cnn ported it.)
            weights = [w.astype(args.dtype) for w in keras_model.get_weights()]
            keras_model = keras_ref.build_model(name, args.dtype)
            keras_model.set_weights(weights)
    if args.data_dir:
        from torch_cnn import data

        images = data.load_cifar10(data.resolve_data_dir(args.data_dir, download=False)).test.images
        x, what = (
            data.to_float(images[: args.n]).to(dtype),
            f"CIFAR-10 test images ({args.data_dir})",
        )
    else:
        g = torch.Generator().manual_seed(args.seed)
        x = torch.rand(args.n, 3, 32, 32, generator=g, dtype=torch.float64).to(dtype)
        what = f"seeded random images (seed {args.seed})"
    report = compare_with_keras(model, keras_model, x)
    print(f"{path} ({name}) on {len(x)} {what}")
    print(report.format())
    return 0 if report.ok else 1


def _import_keras(command: str) -> tuple[Any, Any]:
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras

        import keras_ref
    except ImportError as exc:
        raise SystemExit(
            f"torch-cnn {command} needs Keras (pip install 'torch-cnn[keras]'): {exc}"
        ) from exc
    return keras, keras_ref


BENCH_NOT_INSTALLED = (
    "torch-cnn bench: the benchmark is not part of the installed package; it lives in the "
    "repository's benchmarks/: in a checkout, run `python -m benchmarks --help`"
)


def _import_benchmarks_cli() -> ModuleType | None:
    """The repository's ``benchmarks.cli``, or None where there is none (an installed wheel).

    Importable from a checkout's root; elsewhere looked for beside ``torch_cnn/`` (an
    editable install of a checkout, whose ``torch-cnn`` runs from anywhere).
    """
    try:
        import benchmarks.cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", "benchmarks.cli"):
            raise  # the benchmark is there but cannot load: say so, not "not installed"
        root = Path(torch_cnn.__file__).resolve().parent.parent
        if str(root) in sys.path or not (root / "benchmarks" / "cli.py").is_file():
            return None
        sys.path.append(str(root))
        return _import_benchmarks_cli()
    return benchmarks.cli


def _cmd_bench_not_installed(args: argparse.Namespace) -> int:
    print(BENCH_NOT_INSTALLED, file=sys.stderr)
    return 2


def _add_bench_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bench``: the repository's benchmark, imported only when the parser is built."""
    bench_cli = _import_benchmarks_cli()
    if bench_cli is not None:
        bench_cli.add_command(sub)
        return
    # Without it, any arguments lead to the one-line message: '-' is no option prefix here,
    # so that argparse takes `--quick` as an argument instead of refusing it.
    p = sub.add_parser(
        "bench", help="the benchmark (in the repository only)", add_help=False, prefix_chars="+"
    )
    p.add_argument("args", nargs="*")
    p.set_defaults(func=_cmd_bench_not_installed)


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

    p = sub.add_parser(
        "port", help="Keras file → .safetensors, or .safetensors → .weights.h5 (no TensorFlow)"
    )
    p.add_argument("src", help="a .keras, .weights.h5 or .h5 file, or a .safetensors file")
    p.add_argument("dst", help="a .safetensors or .weights.h5 path")
    p.add_argument("--model", choices=torch_cnn.list_models(), help="default: from the file")
    p.set_defaults(func=_cmd_port)

    p = sub.add_parser("compare", help="per-layer parity of a Keras file against its port")
    p.add_argument("keras_file", help="a .keras, .h5 or .weights.h5 file")
    p.add_argument("--model", choices=torch_cnn.list_models(), help="default: from the file")
    p.add_argument("--data-dir", help="CIFAR-10 directory; seeded random images without it")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        default="float32",
        help="float64: Keras runs keras_ref's model of that dtype with the file's weights "
        "(a saved model's layers stay float32)",
    )
    p.add_argument("-n", type=int, default=256, help="number of images (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_compare)

    cli_train.add_commands(sub)
    _add_bench_command(sub)
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
