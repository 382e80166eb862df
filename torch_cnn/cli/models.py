"""``torch-cnn list | summary | convert | port``: models and files, no TensorFlow needed."""

from __future__ import annotations

import argparse
import os

import torch_cnn
from torch_cnn.cli.args import (
    DTYPES,
    KERAS_MODEL_SUFFIXES,
    TORCH_SUFFIX,
    CliError,
    add_dtype,
    command,
    existing,
    has_suffix,
    is_keras_path,
    is_weights_only_path,
    output_file,
)
from torch_cnn.cli.common import (
    describe_model,
    load_model,
    load_weights_into,
    model_file_kind,
    warn_nonfinite,
    weights_only_error,
)
from torch_cnn.models import KerasStyleNet, TorchCnnModel
from torch_cnn.porting import infer_model_name
from torch_cnn.porting.keras_files import read_keras_file

WEIGHTS_H5 = ".weights.h5"


def _cmd_list(args: argparse.Namespace) -> int:
    print("\n".join(torch_cnn.list_models()))
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    model = load_model(args.model, command="summary")
    print(torch_cnn.summary(model, expand_nested=args.expand_nested))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """Any supported Keras model file → ``torch_cnn.save``."""
    src, dst = args.src, args.dst
    if is_weights_only_path(src):
        raise CliError(
            f"{src} holds Keras weights but no architecture; convert needs a model file "
            f"({', '.join(KERAS_MODEL_SUFFIXES)} or an unzipped .keras directory). To load "
            "weights into a known architecture: torch-cnn port SRC OUT.safetensors --model ARCH"
        )
    if not is_keras_path(src):
        raise CliError(
            f"{src}: expected a Keras model file ({', '.join(KERAS_MODEL_SUFFIXES)}) or an "
            "unzipped .keras directory"
        )
    existing(src, "file or directory")
    out = output_file(dst, (TORCH_SUFFIX,), "a .safetensors file")
    model = load_model(src, dtype=DTYPES[args.dtype], command="convert")  # warns of NaN/Inf
    torch_cnn.save(model, out)
    print(f"{src} → {out}: {describe_model(model)}, {args.dtype}")
    return 0


def _port_keras_file(path: str, model_arg: str | None) -> TorchCnnModel:
    """The torch model a Keras file holds: ``--model``'s architecture with the file's weights,
    else the file's own (``from_keras``), else (weights only) the seed model it fits."""
    existing(path, "file or directory")
    if model_arg:
        return load_weights_into(load_model(model_arg, command="port"), path)
    if model_file_kind(path) == "keras":
        return load_model(path, command="port")
    try:  # a .weights.h5 of a seed model: placed by the seed models' layer order
        record = read_keras_file(path)
        name = infer_model_name(record)
    except torch_cnn.PortingError as exc:
        raise weights_only_error(path, "port") from exc
    model = torch_cnn.load_keras_weights(torch_cnn.create_model(name), record)
    assert isinstance(model, KerasStyleNet)
    return model


def _cmd_port(args: argparse.Namespace) -> int:
    """Keras file → ``.safetensors``, or ``.safetensors`` → ``.weights.h5``, by the extensions."""
    src, dst = str(args.src), str(args.dst)
    if has_suffix(src, (TORCH_SUFFIX,)):
        out = output_file(dst, (WEIGHTS_H5,), "a Keras .weights.h5 file")
        model = load_model(src, command="port")
        if args.model and args.model != model.name:
            raise CliError(f"{src} holds {model.name!r}, not {args.model!r}")
        warn_nonfinite(model, src)
        torch_cnn.export_keras_weights(model, out)
    else:
        if not is_keras_path(src):
            raise CliError(
                f"{src}: expected a Keras file (.keras, .h5, .weights.h5, .weights.json or an "
                f"unzipped .keras directory) or a {TORCH_SUFFIX} file"
            )
        out = output_file(dst, (TORCH_SUFFIX,), "a .safetensors file")
        model = _port_keras_file(src, args.model)  # the reader warns of NaN/Inf weights
        torch_cnn.save(model, out)
    print(f"{src} → {os.fspath(out)}: {describe_model(model)}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the model and file commands on a ``parser.add_subparsers()`` object."""
    command(
        subparsers,
        "list",
        _cmd_list,
        summary="list the registered models",
        description=["Print the names of the registered models (the seed architectures)."],
    )
    _add_summary(subparsers)
    _add_convert(subparsers)
    _add_port(subparsers)


def _add_summary(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = command(
        subparsers,
        "summary",
        _cmd_summary,
        summary="a Keras-style summary of a model or a model file",
        description=[
            "Print the rows Keras's model.summary() prints (layer, output shape, parameters; "
            "BatchNormalization's moving statistics as non-trainable parameters) for a "
            "registered model or any model file. No TensorFlow needed.",
            "  torch-cnn summary model_cifar10",
            "  torch-cnn summary my_model.keras --expand-nested",
        ],
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_FILE",
        help="a registered model (torch-cnn list), a Keras model file (.keras, .h5, or an "
        "unzipped .keras directory) or a .safetensors file",
    )
    p.add_argument(
        "--expand-nested",
        action="store_true",
        help="also list the layers of nested models, as Keras's expand_nested=True",
    )


def _add_convert(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = command(
        subparsers,
        "convert",
        _cmd_convert,
        summary="convert a Keras model file into a torch_cnn .safetensors file",
        description=[
            "Convert any supported Keras model (a .keras archive or its unzipped directory, "
            "a legacy .h5 written by Keras 3 or Keras 2) into native torch modules with its "
            "weights, and save it with torch_cnn.save (torch_cnn.load reads it back; no code "
            "runs from either file). The file is read without TensorFlow, in a child "
            "process. A model of one of the seed architectures becomes that seed model. "
            "Weights holding NaN or Inf are written with a warning.",
            "  torch-cnn convert my_model.keras my_model.safetensors",
        ],
    )
    p.add_argument(
        "src", metavar="SRC", help="a .keras or .h5 file, or an unzipped .keras directory"
    )
    p.add_argument("dst", metavar="OUT", help="the .safetensors file to write")
    add_dtype(p, "the dtype of the converted weights (default: float32)")


def _add_port(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = command(
        subparsers,
        "port",
        _cmd_port,
        summary="Keras file → .safetensors, or .safetensors → Keras .weights.h5",
        description=[
            "Move weights between Keras and torch_cnn files, by the extensions, without "
            "TensorFlow. A Keras file (.keras, .h5, .weights.h5, sharded .weights.json, a "
            "Keras 2 weights .h5) becomes a .safetensors file; a .safetensors file (a seed "
            "or converted model) becomes a .weights.h5 that Keras's model.load_weights reads.",
            "A weights-only file records no architecture: --model gives it (a registered "
            "model, or a .safetensors or Keras model file of the same architecture); without "
            "it, the seed model the file fits is used.",
            "  torch-cnn port my_model.keras my_model.safetensors",
            "  torch-cnn port ckpt.weights.h5 out.safetensors --model converted.safetensors",
            "  torch-cnn port runs/a/model.safetensors fine_tuned.weights.h5",
        ],
    )
    p.add_argument("src", metavar="SRC", help="a Keras file, or a .safetensors file")
    p.add_argument(
        "dst", metavar="DST", help="a .safetensors path (from Keras) or a .weights.h5 path"
    )
    p.add_argument(
        "--model",
        metavar="ARCH",
        help="the architecture: a registered model, or a .safetensors or Keras model file "
        "(default: the file's own, or the seed model it fits); from a .safetensors, the "
        "model name it must hold",
    )
