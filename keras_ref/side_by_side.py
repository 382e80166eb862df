"""Keras and torch_cnn side by side on the same weights and batches (tests and scripts share it).

The parity suite and the scripts that measure agreement (``scripts/float32_agreement.py``,
``scripts/same_start_accuracy.py``) need the same pieces: a seeded Keras model and the
torch model ported from it, the seeds' losses written in torch, the first real CIFAR-10
training batches in file order, and training trajectories in both frameworks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import keras
import numpy as np
import torch
import torch.nn.functional as F

import torch_cnn
from keras_ref import recipe
from keras_ref.models import build_model, dtype_scope
from keras_ref.weights import seeded_keras_weights
from torch_cnn.models import KerasStyleNet
from torch_cnn.optim import KerasAdam
from torch_cnn.porting import torch_to_keras

BATCH_SIZE = 32
N_STEPS = 50
WEIGHT_SEED = 2024
TRAJECTORY_RTOL_FLOAT32 = 1e-4
KERAS_EPSILON = 1e-7  # keras.config.epsilon(): the probability clip of a cross-entropy
DTYPES = {"float32": torch.float32, "float64": torch.float64}

Batch = tuple[np.ndarray, np.ndarray]  # Keras's view: NHWC images, labels (one-hot or integer)
LossFn = Callable[[KerasStyleNet, torch.Tensor, torch.Tensor], torch.Tensor]
Steps = list[tuple[float, list[np.ndarray]]]  # (loss, weights in Keras layout) after each step


def build_seeded_pair(name: str, dtype: str, seed: int = 0) -> tuple[Any, KerasStyleNet]:
    """A Keras reference model with seeded weights and the torch model ported from it."""
    keras_model = build_model(name, dtype)
    seeded_keras_weights(keras_model, seed)
    model = torch_cnn.create_model(name, dtype=DTYPES[dtype])
    torch_cnn.load_keras_weights(model, keras_model)
    assert isinstance(model, KerasStyleNet)
    return keras_model, model.eval()


# ---------------------------------------------------------------------------------------------
# The seeds' losses, in torch


def cce_on_softmax(model: KerasStyleNet, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Keras's ``CategoricalCrossentropy()`` on model_cnn's softmax output (seed 000).

    Keras's softmax tags its output with the logits (``_keras_logits``) and the
    TensorFlow cross-entropy uses them (``tf.nn.softmax_cross_entropy_with_logits``),
    so no probability is clipped to [1e-7, 1 - 1e-7]: this is log-softmax, batch mean.
    """
    return -(onehot * F.log_softmax(model.logits(x), dim=-1)).sum(dim=-1).mean()


def clipped_cce_on_probs(
    model: KerasStyleNet, x: torch.Tensor, onehot: torch.Tensor
) -> torch.Tensor:
    """What ``from_logits=False`` would compute without the logits: clipped log-probabilities."""
    probs: torch.Tensor = model(x)
    probs = probs / probs.sum(dim=-1, keepdim=True)
    probs = probs.clamp(KERAS_EPSILON, 1 - KERAS_EPSILON)
    return -(onehot * probs.log()).sum(dim=-1).mean()


def sparse_cce_from_logits(
    model: KerasStyleNet, x: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Keras's ``SparseCategoricalCrossentropy(from_logits=True)`` on model_cifar10 (seed 001)."""
    return F.cross_entropy(model.logits(x), labels)


TORCH_LOSSES: dict[str, LossFn] = {
    "model_cnn": cce_on_softmax,
    "model_cifar10": sparse_cce_from_logits,
}


# ---------------------------------------------------------------------------------------------
# Batches: the first N_STEPS · BATCH_SIZE real training images, in file order, unshuffled


def to_torch_batch(images: np.ndarray, targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Keras's NHWC batch as the same bits in NCHW."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return x, torch.from_numpy(targets)


@cache
def _train_subset(cifar10_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    from torch_cnn.data import load_cifar10

    train = load_cifar10(cifar10_dir).train
    n = N_STEPS * BATCH_SIZE
    images = train.images[:n].permute(0, 2, 3, 1).numpy()  # (n, 32, 32, 3) uint8
    return np.ascontiguousarray(images), train.labels[:n].numpy()


def train_batches(
    cifar10_dir: Path, name: str, dtype: str, steps: int | None = None
) -> list[Batch]:
    """The batches Keras sees: images scaled as the seeds do (``astype(dtype) / 255.0``)."""
    images, labels = _train_subset(cifar10_dir)
    n = (steps or N_STEPS) * BATCH_SIZE
    images, labels = images[:n], labels[:n]
    x = images.astype(dtype) / np.asarray(255.0, dtype=dtype)
    y = recipe.targets(name, labels, dtype)
    return [(x[i : i + BATCH_SIZE], y[i : i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)]


# ---------------------------------------------------------------------------------------------
# Trajectories


def keras_weights(keras_model: Any) -> list[np.ndarray]:
    return [np.asarray(w) for w in keras_model.get_weights()]


def keras_steps(
    cifar10_dir: Path,
    name: str,
    dtype: str,
    *,
    xla: bool = False,
    steps: int | None = None,
    seed: int = WEIGHT_SEED,
    every_step: bool = True,
) -> tuple[list[np.ndarray], Steps]:
    """``steps`` (50) ``train_on_batch`` calls with Keras's Adam from seeded weights.

    Returns the initial weights and, per step, the loss and the weights after it (only
    after the last step unless ``every_step``: the others get ``[]``).
    """
    keras_model, _ = build_seeded_pair(name, dtype, seed=seed)
    initial = keras_weights(keras_model)
    batches = train_batches(cifar10_dir, name, dtype, steps)
    out: Steps = []
    with dtype_scope(dtype):  # floatx too: the loss and Adam's learning rate follow it
        keras_model.compile(
            optimizer=keras.optimizers.Adam(), loss=recipe.loss(name), jit_compile=xla
        )
        for i, (x, y) in enumerate(batches):
            loss = float(keras_model.train_on_batch(x, y, return_dict=True)["loss"])
            keep = every_step or i == len(batches) - 1
            out.append((loss, keras_weights(keras_model) if keep else []))
    return initial, out


def torch_steps(
    cifar10_dir: Path,
    name: str,
    dtype: str,
    make_optimizer: Callable[[Iterator[torch.nn.Parameter]], torch.optim.Optimizer] = KerasAdam,
    *,
    seed: int = WEIGHT_SEED,
    every_step: bool = True,
) -> Steps:
    """The same steps in torch (the seed's loss, ``make_optimizer``): loss and weights after each
    (Keras layout; only after the last step unless ``every_step``)."""
    _, model = build_seeded_pair(name, dtype, seed=seed)
    model.train()
    optimizer = make_optimizer(model.parameters())
    batches = train_batches(cifar10_dir, name, dtype)
    out: Steps = []
    for i, (images, targets) in enumerate(batches):
        x, y = to_torch_batch(images, targets)
        optimizer.zero_grad(set_to_none=True)
        loss = TORCH_LOSSES[name](model, x, y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        keep = every_step or i == len(batches) - 1
        out.append(
            (loss.item(), [a for layer in torch_to_keras(model) for a in layer] if keep else [])
        )
    return out


def max_abs(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def max_rel(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    """Largest |Δ| of each tensor relative to that tensor's largest |value|."""
    return max(float(np.abs(x - y).max() / np.abs(y).max()) for x, y in zip(a, b, strict=True))


def float32_agreement(a: Steps, b: Steps, rtol: float = TRAJECTORY_RTOL_FLOAT32) -> int:
    """How many leading steps ``a`` follows ``b``: losses and every weight tensor within ``rtol``
    (relative to the loss, and to each tensor's largest |value|).

    >>> w = [np.ones(3)]
    >>> float32_agreement([(2.0, w), (2.0, w), (1.0, w)], [(2.0, w), (2.0001, w), (2.0, w)])
    2
    """
    for step, ((loss_a, w_a), (loss_b, w_b)) in enumerate(zip(a, b, strict=True)):
        if abs(loss_a - loss_b) > rtol * abs(loss_b) or max_rel(w_a, w_b) > rtol:
            return step
    return len(b)
