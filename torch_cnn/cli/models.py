"""``torch-cnn list | summary | parity | port | compare``: models and Keras files."""

from __future__ import annotations

import argparse
import os
import sys

import torch

import torch_cnn
from torch_cnn import data
from torch_cnn.cli.common import import_keras
from torch_cnn.models import KerasStyleNet
from torch_cnn.porting import infer_model_name, keras_writer
from torch_cnn.porting.keras_files import read_keras_file


def _cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(torch_cnn.list_models()))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    print(torch_cnn.summary(torch_cnn.create_model(args.model)))
    return 0


def _parity_images(data_dir: str | None, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, str]:
    """Real CIFAR-10 test images when the data can be found (or downloaded), else seeded noise."""
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
    if model_name:
        return torch_cnn.load_keras_weights(torch_cnn.create_model(model_name, dtype=dtype), path)
    record = read_keras_file(path)
    model = torch_cnn.create_model(infer_model_name(record), dtype=dtype)
    return torch_cnn.load_keras_weights(model, record)


def _cmd_port(args: argparse.Namespace) -> int:
    """Keras file → torch checkpoint, or torch checkpoint → .weights.h5, by the extensions."""
    src, dst = str(args.src), str(args.dst)
    if _is_keras_file(src) and dst.endswith(TORCH_SUFFIXES):
        model = _port_keras_file(src, args.model)
        assert isinstance(model, KerasStyleNet)
        name = model.name
        torch_cnn.save(model, dst)
    elif src.endswith(TORCH_SUFFIXES) and dst.endswith(".weights.h5"):
        loaded = torch_cnn.load(src)
        assert isinstance(loaded, KerasStyleNet)  # TODO(issue 13): converted models too
        if args.model and args.model != loaded.name:
            raise torch_cnn.PortingError(f"{src} holds {loaded.name!r}, not {args.model!r}")
        name = loaded.name
        keras_writer.write_weights_h5(loaded, dst)
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
    keras, keras_ref = import_keras("compare")
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


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the model and Keras-file commands on a ``parser.add_subparsers()`` object."""
    p = subparsers.add_parser("list", help="list the registered models")
    p.set_defaults(func=_cmd_list)

    p = subparsers.add_parser("summary", help="a Keras-style summary of a model")
    p.add_argument("model", choices=torch_cnn.list_models())
    p.set_defaults(func=_cmd_summary)

    p = subparsers.add_parser(
        "parity", help="port each Keras reference model and compare every layer (needs Keras)"
    )
    p.add_argument("--model", choices=torch_cnn.list_models())
    p.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("-n", type=int, default=1017, help="number of test images (default 1017)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Keras initialisers")
    p.set_defaults(func=_cmd_parity)

    p = subparsers.add_parser(
        "port", help="Keras file → .safetensors, or .safetensors → .weights.h5 (no TensorFlow)"
    )
    p.add_argument("src", help="a .keras, .weights.h5 or .h5 file, or a .safetensors file")
    p.add_argument("dst", help="a .safetensors or .weights.h5 path")
    p.add_argument("--model", choices=torch_cnn.list_models(), help="default: from the file")
    p.set_defaults(func=_cmd_port)

    p = subparsers.add_parser("compare", help="per-layer parity of a Keras file against its port")
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
