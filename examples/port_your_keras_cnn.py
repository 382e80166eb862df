"""Port your own Keras CNN to PyTorch: convert it, check it against Keras, save it.

    python examples/port_your_keras_cnn.py --keras-file my_model.keras --out runs/port
    python examples/port_your_keras_cnn.py --out runs/port   # builds a small Keras CNN (needs Keras)

1. A Keras model file: yours (``.keras``, its unzipped directory, or a legacy ``.h5``), or,
   without ``--keras-file``, a small CNN built and saved here with Keras (BatchNormalization,
   Dropout and global pooling: layers the seed models do not have).
2. ``torch_cnn.from_keras`` converts it into native torch modules, without TensorFlow.
3. When Keras is installed (and unless ``--no-keras``), Keras and torch run the same images
   (the CIFAR-10 test images from ``CIFAR10_DIR`` when the model takes 32×32 RGB, else seeded
   random ones) and the outputs are compared: max |Δ| and top-1 agreement.
   ``torch-cnn compare FILE`` prints the same comparison layer by layer.
4. ``torch_cnn.save`` writes ``OUT/model.safetensors``; ``torch_cnn.load`` reads it back.

Exit status 1 when the outputs differ by more than ``--atol`` or a prediction differs.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torch_cnn
from torch_cnn import data

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines, if Keras loads
from torch_cnn.predict import input_size


def build_keras_cnn(keras: Any) -> Any:
    """A small Keras CNN of the kind users bring: conv-BN-ReLU, pooling, dropout, softmax."""
    layers = keras.layers
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="my_cnn")


def test_images(model: torch.nn.Module, n: int, data_dir: str | None) -> tuple[torch.Tensor, str]:
    """``n`` images the model takes, NCHW floats in [0, 1], and where they came from."""
    height, width = input_size(model)
    if data_dir and (height, width) == (32, 32):
        split = data.load_test_split(data_dir, download=False)
        return data.to_float(split.images[:n]), f"{min(n, len(split.images))} CIFAR-10 test images"
    h, w = height or 32, width or 32
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8)
    return data.to_float(images), f"{n} seeded random {h}×{w} images"


def compare_with_keras(
    keras_file: Path, model: torch.nn.Module, x: torch.Tensor, atol: float
) -> bool:
    """Keras's output against torch's on ``x``; prints max |Δ| and top-1 agreement."""
    import keras

    keras_model = keras.saving.load_model(keras_file)
    theirs = np.asarray(keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0))
    with torch.no_grad():
        ours = model(x).numpy()
    if ours.ndim == 4:  # an image output: torch NCHW, Keras NHWC
        ours = ours.transpose(0, 2, 3, 1)
    delta = float(np.abs(ours - theirs).max())
    print(f"Keras {keras.__version__} vs torch_cnn: max |Δ| {delta:.2e}")
    ok = delta <= atol
    if ours.ndim == 2:
        agree = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
        print(f"top-1 agreement {agree:.2%} on {len(x)} images")
        ok = ok and agree == 1.0
    return ok


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keras_installed = importlib.util.find_spec("keras") is not None and not args.no_keras
    keras_file = Path(args.keras_file) if args.keras_file else None
    if keras_file is None:
        if not keras_installed:
            print("no --keras-file, and Keras is not installed to build one", file=sys.stderr)
            return 2
        import keras

        keras.utils.set_random_seed(0)
        keras_file = out / "my_cnn.keras"
        build_keras_cnn(keras).save(keras_file)
        print(f"built a Keras CNN and saved it to {keras_file}")

    model = torch_cnn.from_keras(keras_file)  # no TensorFlow needed
    print(f"converted {keras_file} into {type(model).__name__}:")
    print(torch_cnn.summary(model))

    x, what = test_images(model, args.max_images, args.data_dir)
    ok = True
    if keras_installed:
        print(f"comparing on {what}")
        ok = compare_with_keras(keras_file, model, x, args.atol)
    else:
        print("Keras is not installed (or --no-keras): skipping the comparison")

    path = torch_cnn.save(model, out / "model.safetensors")
    reloaded = torch_cnn.load(path)  # rebuilt from the file's metadata, no code run
    with torch.no_grad():
        same = torch.equal(reloaded(x), model(x))
    print(f"saved {path}; torch_cnn.load gives the same outputs: {same}")
    return 0 if ok and same else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-file", help="a .keras, unzipped .keras directory or legacy .h5")
    parser.add_argument("--out", default="runs/port", help="where to write (default: runs/port)")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")  # fmt: skip
    parser.add_argument("--max-images", type=int, default=256, help="images to compare on")
    parser.add_argument("--atol", type=float, default=1e-5, help="largest max |Δ| accepted")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras comparison")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
