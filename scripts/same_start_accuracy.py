"""Both frameworks from the same start: identical initial weights and per-epoch orders.

For each seed: Keras's reference model gets seeded weights (``parity_tests.helpers``), torch_cnn
gets them ported; ``torch_cnn.fit`` trains with its seeded permutations, and Keras's ``fit`` is
given the very same permutation every epoch (``shuffle=False`` on pre-ordered arrays). Both
train 10 epochs in float32 with the seeds' recipe; prints each seed's test accuracy and the
means. What is left between the frameworks is float32 rounding (chaotic over 10 epochs,
unbiased), so the means should agree within noise: the README's Accuracy parity.

    CIFAR10_DIR=../shared/data/cifar-10-batches-py python scripts/same_start_accuracy.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import keras_ref
from keras_ref import recipe
from keras_ref.side_by_side import build_seeded_pair
from torch_cnn import data
from torch_cnn.train import evaluate, fit

WEIGHT_SEED_OFFSET = 100  # weight seeds 100, 101, ...; order seeds 0, 1, ...


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model_cifar10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    args = parser.parse_args()
    ds = data.load_cifar10(data.resolve_data_dir(args.data_dir, download=False))
    n = len(ds.train)
    x_test = keras_ref.preprocess(ds.test.images.permute(0, 2, 3, 1).numpy())
    y_test = ds.test.labels.numpy()
    accs: dict[str, list[float]] = {"torch_cnn": [], "keras": []}
    for seed in args.seeds:
        keras_model, model = build_seeded_pair(
            args.model, "float32", seed=WEIGHT_SEED_OFFSET + seed
        )
        fit(model, ds.train, epochs=args.epochs, seed=seed, device="cpu", progress=False)
        accs["torch_cnn"].append(evaluate(model, ds.test).accuracy)
        recipe.compile_model(keras_model, args.model, jit_compile=False)
        # fit's permutations, in turn (fit draws nothing else from it without augmentation)
        order_generator = torch.Generator().manual_seed(seed)
        for _ in range(args.epochs):
            order = torch.randperm(n, generator=order_generator)
            x = keras_ref.preprocess(ds.train.images[order].permute(0, 2, 3, 1).numpy())
            y = recipe.targets(args.model, ds.train.labels[order].numpy(), "float32")
            keras_model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
        predicted = keras_model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
        accs["keras"].append(float((predicted == y_test).mean()))
        print(
            f"seed {seed}: torch_cnn {accs['torch_cnn'][-1]:.4f}  keras {accs['keras'][-1]:.4f}",
            flush=True,
        )
    for name, values in accs.items():
        print(f"{name}: mean {100 * statistics.fmean(values):.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
