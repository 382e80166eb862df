"""Train a seed model in PyTorch with the seeds' Keras recipe, and hand the weights to Keras.

    python examples/train_seed_and_export.py --epochs 10 --out runs/seed

1. ``torch_cnn.train.seeded_model("model_cifar10", seed=0)``: seed 001's CNN with Keras's
   initialisers, seeded.
2. ``torch_cnn.fit``: Keras's Adam (lr 1e-3), batch 32, a fresh permutation every epoch, on the
   CIFAR-10 training images (``CIFAR10_DIR``), validating on the test images; the run directory
   goes to ``--out``.
3. ``torch_cnn.export_keras_weights`` writes ``OUT/model_cifar10.weights.h5``: the
   ``.weights.h5`` Keras's ``save_weights`` writes.
4. When Keras is installed, the Keras model of the seed notebook (``keras_ref``) loads it with
   ``model.load_weights`` and classifies the test images as torch does: max |Δ| of the
   outputs, top-1 agreement, and both test accuracies.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

import torch_cnn
from torch_cnn import data
from torch_cnn.train import seeded_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ log lines, if Keras loads


def check_in_keras(name: str, weights: Path, model: torch.nn.Module, test: data.Split) -> bool:
    """Keras's own model of the seed, with the exported weights, against the torch model."""
    import keras_ref  # the seed notebooks' Keras models (needs the `keras` extra)

    keras_model = keras_ref.build_model(name)
    keras_model.load_weights(weights)
    x = data.to_float(test.images)
    theirs = np.asarray(keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0))
    with torch.no_grad():
        ours = model(x).numpy()
    delta = float(np.abs(ours - theirs).max())
    agree = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    labels = test.labels.numpy()
    print(f"Keras {name} with {weights.name}: max |Δ| {delta:.2e}, top-1 agreement {agree:.2%}; "
          f"test accuracy Keras {np.mean(theirs.argmax(1) == labels):.4f}, "
          f"torch {np.mean(ours.argmax(1) == labels):.4f}")  # fmt: skip
    return delta <= 1e-5 and agree == 1.0


def main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    ds = data.load_cifar10(args.data_dir, download=False)
    n = args.max_images
    train = ds.train if n is None else data.Split(ds.train.images[:n], ds.train.labels[:n])

    model = seeded_model(args.model, seed=args.seed)
    history = torch_cnn.fit(model, train, ds.test, epochs=args.epochs, seed=args.seed,
                            checkpoint_dir=out, class_names=ds.classes)  # fmt: skip
    model.eval()
    result = torch_cnn.evaluate(model, ds.test)
    print(f"{args.model}: test accuracy {result.accuracy:.4f}, test loss {result.loss:.4f} after "
          f"{history.epochs} of {args.epochs} epochs on {len(train.labels):,} images")  # fmt: skip

    weights = torch_cnn.export_keras_weights(model, out / f"{args.model}.weights.h5")
    print(f"wrote {weights} (and the run directory {out}/)")
    if importlib.util.find_spec("keras") is None or args.no_keras:
        print("Keras is not installed (or --no-keras): not loading the weights in Keras")
        return 0
    return 0 if check_in_keras(args.model, weights, model, ds.test) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=torch_cnn.list_models(), default="model_cifar10")
    parser.add_argument("--out", default="runs/seed", help="the run directory to write")
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"),
                        help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")  # fmt: skip
    parser.add_argument("--epochs", type=int, default=10, help="epochs to train (default: 10)")
    parser.add_argument("--max-images", type=int, help="the first N training images only")
    parser.add_argument("--seed", type=int, default=0, help="weights, shuffling and augmentation")
    parser.add_argument("--no-keras", action="store_true", help="skip loading the export in Keras")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(main(parse_args()))
