"""Accuracy parity of a converted Keras model: Keras's fit against torch_cnn.fit, 5 seeds.

For each seed: Keras builds a small residual CNN with BatchNormalization and Dropout (its
initialisers seeded with ``keras.utils.set_random_seed(seed)``) and compiles it with Adam;
``torch_cnn.from_keras`` converts it, so both frameworks start from the same weights, and
``optimizer_from_keras`` gives torch the optimizer the Keras model is compiled with. Then
both train 10 epochs at batch 32 in float32 on the CIFAR-10 sample (images / 255):
``torch_cnn.fit(seed=seed)``, and Keras's ``model.fit`` on the batch orders that run drew
(``--own-order``: Keras shuffles for itself), each with its own dropout masks; each model's
test accuracy is measured. Paired so, a seed's two runs differ by dropout masks and float32
rounding only: the test accuracy of this BN model after 10 epochs on 5,085 images swings
by several points from epoch to epoch (and 1,017 test images alone leave ±1.5 points), so
independent orders need many more than 5 seeds to resolve 2 points.

Prints a markdown table (mean ± sd over seeds per framework, and the difference) with the
run's provenance, and exits 1 when the means differ by more than ``--max-gap`` points (2):

    CIFAR10_DIR=../shared/data/cifar-10-batches-py python scripts/accuracy_parity_converted.py

``--model residual_bn`` trains the parity zoo's entry of that name instead (smaller and
faster, lower accuracy); ``--epochs``, ``--seeds``, ``--train-images``, ``--test-images``
make a quick run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras
import numpy as np
import torch

import keras_ref
import torch_cnn
from keras_ref import zoo
from torch_cnn import data
from torch_cnn.convert.optimizer import optimizer_from_keras
from torch_cnn.env import describe_device, versions
from torch_cnn.train import evaluate, fit

MAX_GAP_POINTS = 2.0
BATCH_SIZE = 32


def residual_bn_cifar(k: Any) -> Any:
    """A small ResNet: a 4×4/4 conv-BN stem (8×8×16), an identity block, a stride-2 block
    with a 1×1 conv-BN projection (4×4×32), global average pooling, Dropout(0.2), Dense
    softmax."""
    L = k.layers

    def conv_bn(h: Any, filters: int, kernel: int, strides: int = 1) -> Any:
        h = L.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(h)
        return L.BatchNormalization()(h)

    x = k.Input(shape=(32, 32, 3))
    h = L.ReLU()(conv_bn(x, 16, 4, strides=4))
    r = conv_bn(L.ReLU()(conv_bn(h, 16, 3)), 16, 3)
    h = L.ReLU()(L.Add()([h, r]))
    r = conv_bn(L.ReLU()(conv_bn(h, 32, 3, strides=2)), 32, 3)
    h = L.ReLU()(L.Add()([r, conv_bn(h, 32, 1, strides=2)]))
    h = L.Dropout(0.2)(L.GlobalAveragePooling2D()(h))
    return k.Model(x, L.Dense(10, activation="softmax")(h), name="residual_bn_cifar")


MODELS = {"residual_bn_cifar": residual_bn_cifar, "residual_bn": zoo.ZOO["residual_bn"].fn}


def keras_arrays(split: data.Split) -> tuple[np.ndarray, np.ndarray]:
    images: np.ndarray = keras_ref.preprocess(split.images.permute(0, 2, 3, 1).numpy())
    return images, split.labels.numpy()


def one_seed(
    name: str, seed: int, ds: data.Cifar10, epochs: int, same_order: bool
) -> tuple[float, float, float, float, int]:
    """Keras's and torch_cnn's test accuracies and training seconds for one seed."""
    keras.utils.set_random_seed(seed)  # Keras's initialisers, shuffles and dropout masks
    keras_model = MODELS[name](keras)
    keras_model.compile(
        optimizer=keras.optimizers.Adam(),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=False,
    )
    model = torch_cnn.from_keras(keras_model)  # the same initial weights
    optimizer = optimizer_from_keras(model, keras_model)  # Adam, not built yet: step 0
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    t0 = time.perf_counter()
    fit(model, ds.train, epochs=epochs, batch_size=BATCH_SIZE, optimizer=optimizer, seed=seed,
        device="cpu", progress=False)  # fmt: skip
    torch_seconds = time.perf_counter() - t0
    torch_acc = evaluate(model, ds.test).accuracy

    t0 = time.perf_counter()
    if same_order:  # fit's permutations, in turn (it draws nothing else from its generator)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(ds.train), generator=generator)
            x, y = keras_arrays(data.Split(ds.train.images[order], ds.train.labels[order]))
            keras_model.fit(x, y, batch_size=BATCH_SIZE, epochs=1, shuffle=False, verbose=0)
    else:
        x, y = keras_arrays(ds.train)
        keras_model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True, verbose=0)
    keras_seconds = time.perf_counter() - t0
    x_test, y_test = keras_arrays(ds.test)
    predicted = keras_model.predict(x_test, batch_size=256, verbose=0).argmax(axis=1)
    keras_acc = float((predicted == y_test).mean())
    return keras_acc, torch_acc, keras_seconds, torch_seconds, params


def mean_sd(values: Sequence[float]) -> str:
    points = [100 * v for v in values]
    sd = statistics.stdev(points) if len(points) > 1 else 0.0
    return f"{statistics.fmean(points):.2f} ± {sd:.2f}"


def table(name: str, accs: dict[str, list[float]]) -> str:
    """The markdown table: mean ± sd per framework (percent), per-seed values, the gap."""
    gap = 100 * (statistics.fmean(accs["torch_cnn"]) - statistics.fmean(accs["keras"]))
    n = len(accs["keras"])
    rows = [
        f"| {name} | test accuracy %, mean ± sd ({n} seed{'s' * (n > 1)}) | per seed |",
        "|---|---|---|",
        f"| Keras {keras.__version__} `fit` (Adam) | {mean_sd(accs['keras'])} | "
        + ", ".join(f"{100 * a:.2f}" for a in accs["keras"])
        + " |",
        "| torch_cnn `fit`, converted (`from_keras`, `optimizer_from_keras`) | "
        f"{mean_sd(accs['torch_cnn'])} | "
        + ", ".join(f"{100 * a:.2f}" for a in accs["torch_cnn"])
        + " |",
        f"| difference (torch_cnn − Keras) | {gap:+.2f} points | |",
    ]
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="residual_bn_cifar")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--train-images", type=int, help="the first N training images only")
    parser.add_argument("--test-images", type=int, help="the first N test images only")
    parser.add_argument(
        "--own-order",
        action="store_true",
        help="Keras shuffles for itself (default: Keras is given the batch orders torch_cnn.fit "
        "draws, so the two runs of a seed differ only in dropout masks and float32 rounding)",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch's intra-op threads (%(default)s: batch-32 steps of a small CNN gain little "
        "from a pool, and on a loaded machine its threads spin: 2 threads ran 35× slower at "
        "load 6 on 2 cores)",
    )
    parser.add_argument(
        "--max-gap", type=float, default=MAX_GAP_POINTS, help="points (%(default)s)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    ds = data.load_cifar10(data.resolve_data_dir(args.data_dir, download=False))
    n_train, n_test = args.train_images or len(ds.train), args.test_images or len(ds.test)
    ds = data.Cifar10(
        data.Split(ds.train.images[:n_train], ds.train.labels[:n_train]),
        data.Split(ds.test.images[:n_test], ds.test.labels[:n_test]),
        ds.classes,
    )
    accs: dict[str, list[float]] = {"keras": [], "torch_cnn": []}
    seconds = {"keras": 0.0, "torch_cnn": 0.0}
    start = time.perf_counter()
    params = 0
    for seed in args.seeds:
        k_acc, t_acc, k_s, t_s, params = one_seed(
            args.model, seed, ds, args.epochs, same_order=not args.own_order
        )
        accs["keras"].append(k_acc)
        accs["torch_cnn"].append(t_acc)
        seconds["keras"] += k_s
        seconds["torch_cnn"] += t_s
        print(f"seed {seed}: keras {k_acc:.4f}  torch_cnn {t_acc:.4f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    print(table(args.model, accs))
    v = versions()
    order = "each its own batch order" if args.own_order else "the same batch orders"
    print(
        f"\n{args.model} ({params:,} trainable parameters), {args.epochs} epochs at batch "
        f"{BATCH_SIZE}, float32, {order}, {len(ds.train)} training / {len(ds.test)} test images from "
        f"{args.data_dir}; {describe_device('cpu')} for torch; torch {v['torch']}, Keras "
        f"{keras.__version__} (TensorFlow backend), torch_cnn {v['torch_cnn']}. Training time: "
        f"Keras {seconds['keras']:.0f} s, torch_cnn {seconds['torch_cnn']:.0f} s; wall "
        f"{wall:.0f} s.\n"
    )
    gap = 100 * (statistics.fmean(accs["torch_cnn"]) - statistics.fmean(accs["keras"]))
    ok = abs(gap) <= args.max_gap
    print(
        f"|mean_torch − mean_keras| = {abs(gap):.2f} points (≤ {args.max_gap:g}: {'ok' if ok else 'FAIL'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
