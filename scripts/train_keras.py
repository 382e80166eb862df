"""Train one seed model with Keras: the reference half of the Keras-vs-torch comparison.

The same recipe and data as ``train_torch.py``: ``keras_ref``'s transcription of the seed
model, ``Adam(learning_rate=1e-3)``, batch 32, 10 epochs, a fresh order every epoch, both splits
divided by 255 (``keras_ref.preprocess``), the test split as ``validation_data``. The loss
is the seeds': categorical cross-entropy on softmax outputs with one-hot labels for
``model_cnn`` (seed 000), ``SparseCategoricalCrossentropy(from_logits=True)`` for
``model_cifar10`` (seed 001). The images come from ``torch_cnn.data.load_cifar10``, so both
frameworks read the very same arrays. Writes ``history.json`` and ``metrics.json`` into
``--out`` in the schema ``torch-cnn train`` uses.

Shuffling: ``fit(x, y, shuffle=True)`` after ``keras.utils.set_random_seed(seed)`` (which
this script needs, for reproducible weights) trains on *one* order in every epoch: with a
global seed set, Keras 3.15's array adapter draws its ``tf.random.shuffle`` with the same op
seed each epoch (the class of behaviour in tensorflow/tensorflow#35682). The seed notebooks
set no seed, so their ``fit`` reshuffles every epoch; so does ``torch_cnn.fit``. This script
therefore gives ``fit`` a ``tf.data`` pipeline that draws a fresh, seeded permutation of the
indices every epoch (``epoch_batches``), and keeps the last partial batch, as ``fit`` does.

    python scripts/train_keras.py --model model_cnn --seed 0 --out runs/keras-model_cnn-s0
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import keras_ref
from keras_ref import recipe
from torch_cnn import data
from torch_cnn._io import write_json
from torch_cnn.env import versions
from torch_cnn.train import EVAL_BATCH_SIZE, EvalResult
from torch_cnn.train.run import HISTORY_FILE, METRICS_FILE, run_metrics

HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


def _nhwc(images: Any) -> np.ndarray:
    return keras_ref.preprocess(images.permute(0, 2, 3, 1).numpy())  # (N, 32, 32, 3) float32


def epoch_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int) -> Any:
    """A ``tf.data`` dataset of ``(x, y)`` batches in a new seeded order at every iteration
    (``fit`` iterates it once per epoch); reproducible for a given ``seed``."""
    import tensorflow as tf

    n = len(x)
    x_all, y_all = tf.constant(x), tf.constant(y)
    order = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True)
    return order.batch(batch_size).map(lambda i: (tf.gather(x_all, i), tf.gather(y_all, i)))


def _describe_device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return f"gpu: {tf.config.experimental.get_device_details(gpus[0]).get('device_name', gpus[0].name)}"
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores"


def _evaluate(model: Any, x_test: np.ndarray, y_test: np.ndarray, y_fit: np.ndarray) -> EvalResult:
    """Keras's test loss and accuracy, with the confusion matrix torch_cnn's evaluate gives."""
    test_loss, test_accuracy = model.evaluate(x_test, y_fit, batch_size=EVAL_BATCH_SIZE, verbose=0)
    pred = model.predict(x_test, batch_size=EVAL_BATCH_SIZE, verbose=0).argmax(axis=1)
    k = data.NUM_CLASSES
    confusion = np.bincount(y_test * k + pred, minlength=k * k).reshape(k, k)
    rows = confusion.sum(axis=1)
    return EvalResult(
        loss=float(test_loss),
        accuracy=float(test_accuracy),
        per_class_accuracy=[
            float(confusion[i, i] / rows[i]) if rows[i] else float("nan") for i in range(k)
        ],
        confusion=confusion.tolist(),
        num_samples=len(y_test),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_keras.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, choices=sorted(keras_ref.MODELS))
    parser.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-val", action="store_true", help="no per-epoch validation")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    try:
        root = data.resolve_data_dir(args.data_dir)
        ds = data.load_cifar10(root)
    except data.Cifar10Error as exc:  # one line, as torch-cnn train says it
        print(f"train_keras.py: error: {exc}", file=sys.stderr)
        return 2
    x_train, x_test = _nhwc(ds.train.images), _nhwc(ds.test.images)
    y_test = ds.test.labels.numpy()
    y_train = recipe.targets(args.model, ds.train.labels.numpy())
    y_test_fit = recipe.targets(args.model, y_test)

    keras.utils.set_random_seed(args.seed)  # Python, NumPy and TensorFlow: the initial weights
    model = recipe.compile_model(keras_ref.build_model(args.model), args.model)
    loss_name = recipe.LOSS_NAMES[args.model]
    timer = EpochTimer()
    print(
        f"training {args.model} (Keras {keras.__version__}) for {args.epochs} epochs on "
        f"{len(x_train)} images from {root} (seed {args.seed})",
        file=sys.stderr,
    )
    fitted = model.fit(
        epoch_batches(x_train, y_train, args.batch_size, args.seed),  # reshuffled every epoch
        epochs=args.epochs,
        shuffle=False,  # the dataset draws its own order; fit would only warn
        validation_data=None if args.no_val else (x_test, y_test_fit),
        callbacks=[timer],
        verbose=2,
    )
    result = _evaluate(model, x_test, y_test, y_test_fit)
    import tensorflow as tf

    config = {
        "model": args.model,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "optimizer": "keras.optimizers.Adam(learning_rate=1e-3)",
        "shuffle": "a fresh seeded permutation every epoch (tf.data, reshuffle_each_iteration)",
        "loss": loss_name,
        "validation": "none" if args.no_val else "test split",
        "eval_batch_size": EVAL_BATCH_SIZE,
    }
    metrics = run_metrics(
        result,
        ds.classes,
        framework="keras",
        model=args.model,
        seconds=sum(timer.seconds),
        epoch_seconds=timer.seconds,
        device=_describe_device(),
        seed=args.seed,
        data_dir=str(root),
        num_train=len(x_train),
        config=config,
        versions_={**versions(), "tensorflow": tf.__version__, "keras": keras.__version__},
    )
    out = Path(args.out)
    history = {
        k: [float(v) for v in fitted.history[k]] for k in HISTORY_KEYS if k in fitted.history
    }
    write_json(out / HISTORY_FILE, history)
    write_json(out / METRICS_FILE, metrics)
    print(
        f"{args.model} (keras): test_accuracy {result.accuracy:.4f}  test_loss {result.loss:.4f}  "
        f"({result.num_samples} test images, {args.epochs} epochs, {sum(timer.seconds):.1f}s)"
    )
    print(f"wrote {out}/: {HISTORY_FILE}, {METRICS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
