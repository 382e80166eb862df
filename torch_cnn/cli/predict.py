"""``torch-cnn predict MODEL_OR_FILE IMAGES...``: the top classes of each image."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from torch_cnn import data
from torch_cnn.cli.args import (
    CliError,
    add_device,
    command,
    existing,
    plural,
    positive_int,
)
from torch_cnn.cli.common import find_data_dir, load_model, load_weights_into
from torch_cnn.env import parse_device
from torch_cnn.predict import (
    ARRAY_SUFFIXES,
    DEFAULT_TOP_K,
    IMAGE_SUFFIXES,
    Prediction,
    input_size,
    predict,
    read_images,
)
from torch_cnn.registry import list_models


def class_names_from(data_dir: str | None) -> list[str] | None:
    """CIFAR-10's names from ``batches.meta`` when ``--data-dir`` or ``CIFAR10_DIR`` names the
    data (never a download); ``None`` (the standard names) otherwise."""
    if data_dir is None and not os.environ.get("CIFAR10_DIR"):
        return None
    root = find_data_dir(data_dir)
    assert root is not None
    return data.read_classes(root)


def _format(p: Prediction) -> str:
    return f"{p.source}: " + ", ".join(f"{s.name} {s.probability:.4f}" for s in p.top)


def _cmd_predict(args: argparse.Namespace) -> int:
    for path in args.images:  # every file's name and presence, before the model is read
        if not path.lower().endswith(IMAGE_SUFFIXES + ARRAY_SUFFIXES):
            raise CliError(
                f"{path}: expected a PNG or JPEG image or a NumPy .npy array (a name ending "
                f"in {', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})"
            )
        existing(path)
    if args.model in list_models() and not args.weights:
        raise CliError(
            f"{args.model} is a registered architecture with untrained weights: give its "
            "weights with --weights FILE (a .safetensors or Keras file)"
        )
    if args.weights and args.model not in list_models():
        raise CliError(f"--weights goes with a registered model; {args.model} holds its own")
    classes = class_names_from(args.data_dir)
    device = parse_device(args.device)
    model = load_model(args.model, device=device, command="predict")
    if args.weights:
        model = load_weights_into(model, args.weights)
    size = input_size(model)
    predictions: list[Prediction] = []
    for path in args.images:
        x, sources = read_images(path, size, resize=args.resize)
        predictions += predict(
            model, x, top_k=args.top_k, classes=classes, sources=sources,
            batch_size=args.batch_size,
        )  # fmt: skip
    where = f"{args.model}" + (f" with {args.weights}" if args.weights else "")
    if args.json:
        record: dict[str, Any] = {"model": model.name, "source": where, "device": str(device)}
        record["predictions"] = [p.to_dict() for p in predictions]
        print(json.dumps(record, indent=2))
    else:
        print(f"{model.name} ({where}) on {plural(len(predictions), 'image')}", file=sys.stderr)
        for p in predictions:
            print(_format(p))
    return 0


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``predict`` on a ``parser.add_subparsers()`` object."""
    p = command(
        subparsers,
        "predict",
        _cmd_predict,
        summary="classify images: the top classes and their probabilities",
        description=[
            "Classify PNG or JPEG images and NumPy .npy arrays of uint8 RGB images ((H, W, "
            "3) or (N, H, W, 3)) with a model, and print the top classes of each with their "
            "probabilities: the model's own for a model that ends in softmax, the softmax of "
            "its logits otherwise. Class names are CIFAR-10's (from batches.meta when "
            "CIFAR10_DIR or --data-dir names the data) for a model with ten outputs, "
            "class_0, class_1, ... otherwise. Images must have the model's input size "
            "(32×32 for the seed models) unless --resize.",
            "  torch-cnn predict my_model.safetensors cat.png dog.jpg",
            "  torch-cnn predict model_cifar10 --weights runs/a/model.safetensors batch.npy",
        ],
    )
    p.add_argument(
        "model",
        metavar="MODEL_OR_FILE",
        help="a .safetensors file, a Keras model file (.keras, .h5, or an unzipped .keras "
        "directory), or a registered model with --weights",
    )
    p.add_argument("images", metavar="IMAGE", nargs="+", help="a .png, .jpg, .jpeg or .npy file")
    p.add_argument(
        "--weights",
        metavar="FILE",
        help="the weights of a registered model: a .safetensors or Keras file",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=DEFAULT_TOP_K,
        metavar="K",
        help=f"how many classes to print per image (default: {DEFAULT_TOP_K})",
    )
    p.add_argument(
        "--resize",
        action="store_true",
        help="resize images of another size to the model's (bilinear with half-pixel "
        "centres, as tf.image.resize) instead of refusing them",
    )
    p.add_argument("--json", action="store_true", help="print the predictions as JSON")
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="CIFAR-10 directory whose batches.meta names the classes (default: CIFAR10_DIR)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=256,
        help="images per forward pass (default: 256)",
    )
    add_device(p)
