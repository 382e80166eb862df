"""Classify images with a converted or trained model: ``torch_cnn.predict``.

    python examples/classify_images.py runs/port/model.safetensors cat.png dog.jpg
    python examples/classify_images.py my_model.keras --samples 8 --out runs/classify

MODEL is a ``.safetensors`` file (``torch_cnn.save``, ``torch-cnn convert``, a run directory's
``model.safetensors``), a Keras model file (converted on the fly with ``torch_cnn.from_keras``)
or a registered seed model name (with its untrained initial weights: for trying it out).
IMAGES are PNG or JPEG files, or ``.npy`` arrays of uint8 RGB images ``(H, W, 3)`` or
``(N, H, W, 3)``; they must have the model's input size unless ``--resize`` (bilinear, as
``tf.image.resize``). Without IMAGES, the first ``--samples`` CIFAR-10 test images
(``CIFAR10_DIR``) are written as PNG files into ``--out``, named after their true class, and
classified, with the accuracy against those labels.

Prints each image's top classes with their probabilities (CIFAR-10's class names for a model
with ten outputs); ``torch-cnn predict MODEL IMAGES...`` does the same from the shell.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

import torch_cnn
from torch_cnn import data
from torch_cnn.predict import PredictError, input_size, predict, read_images

KERAS_SUFFIXES = (".keras", ".h5")


def load_model(spec: str) -> torch.nn.Module:
    """A model from a .safetensors file, a Keras file or directory, or a registered name."""
    path = Path(spec)
    if path.suffix == ".safetensors":
        return torch_cnn.load(path)  # in eval mode
    if path.suffix in KERAS_SUFFIXES or path.is_dir():
        return torch_cnn.from_keras(path)  # in eval mode
    if spec in torch_cnn.list_models():
        print(f"{spec}: a registered model with untrained weights", file=sys.stderr)
        return torch_cnn.create_model(spec).eval()
    raise SystemExit(f"{spec}: expected a .safetensors or Keras file, or one of "
                     f"{torch_cnn.list_models()}")  # fmt: skip


def write_samples(data_dir: str | None, n: int, out: Path) -> list[Path]:
    """The first ``n`` CIFAR-10 test images as PNG files named ``0003_cat.png``."""
    from PIL import Image  # Pillow comes with matplotlib, a torch-cnn dependency

    split = data.load_test_split(data_dir, download=False)
    classes = data.read_classes(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(min(n, len(split.labels))):
        path = out / f"{i:04d}_{classes[int(split.labels[i])]}.png"
        Image.fromarray(split.images[i].permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    print(f"wrote {len(paths)} CIFAR-10 test images to {out}/")
    return paths


def main(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    paths = [Path(p) for p in args.images] or write_samples(
        args.data_dir, args.samples, Path(args.out)
    )
    size = input_size(model)
    try:
        batches = [read_images(p, size, resize=args.resize) for p in paths]
    except PredictError as exc:  # an unreadable image, or one of another size without --resize
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = torch.cat([x for x, _ in batches])
    sources = [s for _, names in batches for s in names]
    classes = data.read_classes(args.data_dir) if args.data_dir else None
    predictions = predict(model, images, top_k=args.top_k, classes=classes, sources=sources)
    for p in predictions:
        best = ", ".join(f"{s.name} {s.probability:.3f}" for s in p.top)
        print(f"{p.source}: {best}")
    if not args.images:  # the samples are named after their true class
        truth = [Path(p.source).stem.split("_", 1)[1] for p in predictions]
        hits = np.mean([p.label == t for p, t in zip(predictions, truth, strict=True)])
        print(f"accuracy {hits:.4f} on {len(predictions)} images")
    return 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", metavar="MODEL", help="a .safetensors or Keras file, or a name")
    parser.add_argument("images", metavar="IMAGE", nargs="*", help="PNG, JPEG or .npy files")
    parser.add_argument("--top-k", type=int, default=3, help="classes to print per image")
    parser.add_argument("--resize", action="store_true", help="resize to the model's input size")
    parser.add_argument("--samples", type=int, default=8,
                        help="without IMAGES: how many CIFAR-10 test images to classify")  # fmt: skip
    parser.add_argument("--out", default="runs/classify", help="where the sample PNGs go")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")  # fmt: skip
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
