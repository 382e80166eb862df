"""Fine-tune a converted Keras model on CIFAR-10 with ``torch_cnn.fit``, then export it back.

    python examples/fine_tune_converted.py --keras-file my_model.keras --epochs 3 --out runs/ft
    python examples/fine_tune_converted.py --out runs/ft   # trains a Keras CNN first (needs Keras)

1. A Keras model file that takes 32×32 RGB images and has 10 outputs: yours, or, without
   ``--keras-file``, a small CNN compiled with Adam and trained here by Keras for one epoch,
   then saved: its ``.keras`` file carries the optimizer and its state.
2. ``torch_cnn.from_keras`` converts it (no TensorFlow needed).
3. The optimizer: when the file carries one (a model saved after ``compile`` and ``fit``),
   ``torch_cnn.optimizer_from_keras`` rebuilds it with its state (Adam's moments, the step
   count), so training continues where Keras stopped; otherwise Keras's Adam at 1e-3.
4. ``torch_cnn.fit`` trains it on the CIFAR-10 training images (``CIFAR10_DIR``), validating on
   the test images, and writes the run directory (``history.json``, ``metrics.json``,
   ``curves.png``, ``model.safetensors``, ``last.pt``) into ``--out``.
5. ``torch_cnn.export_keras_weights`` writes ``OUT/fine_tuned.weights.h5``; when Keras is
   installed, the original Keras model loads it (``model.load_weights``) and computes what
   the fine-tuned torch model computes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import torch

import torch_cnn
from torch_cnn import data
from torch_cnn.convert.optimizer import read_keras_optimizer
from torch_cnn.optim import KerasAdam

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines, if Keras loads


def train_in_keras(out: Path, train: data.Split, seed: int) -> Path:
    """What a Keras user has: a CNN trained a while by Keras, saved with its optimizer."""
    import keras

    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
        [
            keras.Input(shape=(32, 32, 3)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.BatchNormalization(),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(10, activation="softmax"),
        ],
        name="keras_trained_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    x = train.images.permute(0, 2, 3, 1).numpy() / 255.0  # Keras takes NHWC
    model.fit(x, train.labels.numpy(), batch_size=32, epochs=1, verbose=0)
    path = out / "keras_trained.keras"
    model.save(path)
    print(f"Keras trained {model.name} for one epoch on {len(x):,} images: {path}")
    return path


def subset(split: data.Split, n: int | None) -> data.Split:
    return split if n is None else data.Split(split.images[:n], split.labels[:n])


def optimizer_for(model: torch.nn.Module, keras_file: Path) -> tuple[Any, str]:
    """The file's own optimizer with its state, else Keras's Adam at its defaults."""
    if read_keras_optimizer(keras_file) is not None:
        optimizer = torch_cnn.optimizer_from_keras(model, keras_file)
        step = int(optimizer.param_groups[0]["step"])
        return optimizer, f"{type(optimizer).__name__} from the file, continuing after step {step}"
    return KerasAdam(model.parameters()), "KerasAdam, lr 1e-3 (the file carries no optimizer)"


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load_cifar10(args.data_dir, download=False)
    train, test = subset(ds.train, args.max_images), subset(ds.test, args.max_images)

    if args.keras_file:
        keras_file = Path(args.keras_file)
    elif importlib.util.find_spec("keras") is not None:
        keras_file = train_in_keras(out, train, args.seed)
    else:
        print("no --keras-file, and Keras is not installed to make one", file=sys.stderr)
        return 2

    model = torch_cnn.from_keras(keras_file)
    optimizer, origin = optimizer_for(model, keras_file)
    print(f"converted {keras_file} into {type(model).__name__}; optimizer: {origin}")

    before = torch_cnn.evaluate(model, test)
    history = torch_cnn.fit(
        model, train, test, epochs=args.epochs, optimizer=optimizer, seed=args.seed,
        checkpoint_dir=out, class_names=ds.classes, progress=False,
    )  # fmt: skip
    model.eval()
    after = torch_cnn.evaluate(model, test)
    epochs = f"{history.epochs} epoch{'s' if history.epochs != 1 else ''}"
    print(f"test accuracy {before.accuracy:.4f} before, {after.accuracy:.4f} after {epochs} "
          f"on {len(train.labels):,} images")  # fmt: skip

    weights = torch_cnn.export_keras_weights(model, out / "fine_tuned.weights.h5")
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    if importlib.util.find_spec("keras") is not None and not args.no_keras:
        check_in_keras(keras_file, weights, model, test)
    return 0


def check_in_keras(
    keras_file: Path, weights: Path, model: torch.nn.Module, test: data.Split
) -> None:
    """The original Keras model with the fine-tuned weights computes what torch computes."""
    import keras

    keras_model = keras.saving.load_model(keras_file, compile=False)  # the model, not its optimizer
    keras_model.load_weights(weights)
    x = data.to_float(test.images)
    theirs = keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0)
    with torch.no_grad():
        ours = model(x).numpy()
    print(f"Keras load_weights({weights.name}): max |Δ| {abs(ours - theirs).max():.2e} "
          f"against torch on {len(x):,} test images")  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keras-file", help="a .keras, unzipped .keras directory or legacy .h5")
    parser.add_argument("--out", default="runs/fine_tune", help="the run directory to write")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=3, help="epochs to fine-tune (default: 3)")
    parser.add_argument("--max-images", type=int, help="the first N training and test images only")
    parser.add_argument("--seed", type=int, default=0, help="shuffling and dropout seed")
    parser.add_argument("--no-keras", action="store_true", help="skip loading the export in Keras")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
