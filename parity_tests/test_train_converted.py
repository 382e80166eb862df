"""Converted Keras models train in torch as they train in Keras (issue 14 §2), in float64.

From identical weights, on the first real CIFAR-10 training images (file order, 32 a batch,
``astype("float64") / 255`` as the seeds scale them): ``N_STEPS`` Keras ``train_on_batch``
calls against torch steps through ``fit``'s own training step (``TrainStep``: the converted
model's ``logits`` and the loss ``fit`` chooses from the last activation), with the
optimizer built from the Keras model's compile config (``optimizer_from_keras``).

The model holds what converters get wrong silently: BatchNormalization on maps and on
vectors with ``momentum``/``epsilon`` away from their defaults, one of them frozen
(``trainable=False``: moving statistics in training, no update, no gradient), Dropout
(rate 0, so the masks agree), Add, Concatenate and a DepthwiseConv2D with
``depth_multiplier=2``. Every step: the loss within 1e-9, every weight *and* every moving
statistic within 1e-10; at the end the optimizer's slots too. Each of Keras's Adam, AdamW,
SGD (momentum, Nesterov), RMSprop (plain, centered with momentum).

Deliberately wrong BatchNormalization (torch's unbiased running variance, torch's momentum
convention, torch's eps 1e-5) must miss by far. Resume: a ``.keras`` file trained and saved
by Keras with its optimizer, continued in torch, follows Keras continuing; the same weights
with a fresh optimizer do not.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import MODEL_NAMES, build_seeded_pair
from torch_cnn.convert.optimizer import (
    keras_trainable_variables,
    optimizer_from_keras,
    optimizer_from_keras_state,
    read_keras_optimizer,
)
from torch_cnn.data import load_cifar10
from torch_cnn.layers.norm import BatchNorm1d, BatchNorm2d
from torch_cnn.models import KerasGraph, KerasStyleNet
from torch_cnn.optim import keras_optimizer_state
from torch_cnn.porting.graph_weights import tree_from_keras_model, tree_from_model
from torch_cnn.train.objective import objective_for
from torch_cnn.train.step import TrainStep

pytestmark = [pytest.mark.keras, pytest.mark.data, pytest.mark.usefixtures("one_torch_thread")]

BATCH = 32
N_STEPS = 20
RESUME_STEPS = 10  # Keras trains this many, saves, then both continue this many
WEIGHT_SEED = 14
LOSS_ATOL = 1e-9
WEIGHTS_ATOL = 1e-10
WRONG_MIN_MISS = 1e-6  # a wrong variant must miss by 10⁴ × the bar at least

# name → (Keras optimizer class, its arguments); none at the defaults that would hide a
# convention (momentum, nesterov, centered, weight decay).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "adam": ("Adam", {"learning_rate": 2e-3}),
    "adamw": ("AdamW", {"learning_rate": 2e-3, "weight_decay": 0.05}),
    "sgd_momentum": ("SGD", {"learning_rate": 0.05, "momentum": 0.9}),
    "sgd_nesterov": ("SGD", {"learning_rate": 0.05, "momentum": 0.9, "nesterov": True}),
    "rmsprop": ("RMSprop", {"learning_rate": 1e-3}),
    "rmsprop_centered": ("RMSprop", {"learning_rate": 1e-3, "momentum": 0.5, "centered": True}),
}

Flat = dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# The models


def bn_branches(k: ModuleType) -> Any:
    """BN on maps and on vectors (momentum, epsilon off their defaults, one frozen), depthwise,
    Add, Concatenate, Dropout(0), softmax head."""
    L = k.layers
    x = k.Input(shape=(32, 32, 3))
    h = L.Conv2D(4, 8, strides=8, use_bias=False, name="stem")(x)  # (4, 4, 4)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9, epsilon=0.01, name="bn_stem")(h))
    a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(h)  # (4, 4, 8)
    a = L.BatchNormalization(momentum=0.8, epsilon=0.05, trainable=False, name="bn_frozen")(a)
    b = L.Conv2D(8, 1, name="proj")(h)
    h = L.ReLU()(L.Add()([a, b]))
    c = L.Conv2D(4, 3, padding="same", use_bias=False, name="conv")(h)
    h = L.Concatenate()([h, c])  # (4, 4, 12)
    h = L.BatchNormalization(momentum=0.5, epsilon=1e-4, center=False, name="bn_cat")(h)
    h = L.Dropout(0.0)(L.Flatten()(h))
    h = L.Dense(16, use_bias=False, name="fc1")(h)
    h = L.ReLU()(L.BatchNormalization(momentum=0.7, epsilon=2e-3, name="bn_fc")(h))
    h = L.Dropout(0.0)(h)
    return k.Model(x, L.Dense(10, activation="softmax", name="head")(h), name="bn_branches")


def nested_bn(k: ModuleType) -> Any:
    """A Functional model calling a Sequential block (Conv-BN) and a frozen one, then a
    sigmoid unit: trainable-variable order across nested models, binary cross-entropy."""
    L = k.layers
    block = k.Sequential(
        [
            k.Input((4, 4, 4)),
            L.Conv2D(4, 3, padding="same", use_bias=False),
            L.BatchNormalization(momentum=0.6),
        ],
        name="block",
    )
    frozen = k.Sequential(
        [k.Input((4, 4, 4)), L.Conv2D(4, 1), L.BatchNormalization(epsilon=0.02)], name="frozen"
    )
    frozen.trainable = False
    x = k.Input(shape=(32, 32, 3))
    h = L.Conv2D(4, 8, strides=8, name="stem")(x)
    a = L.DepthwiseConv2D(3, padding="same", name="dw")(h)  # called before, listed after
    h = L.ReLU()(L.Add()([block(h), a, frozen(h)]))
    h = L.GlobalAveragePooling2D()(h)
    return k.Model(x, L.Dense(1, activation="sigmoid", name="unit")(h), name="nested_bn")


MODELS: dict[str, tuple[Callable[[ModuleType], Any], str]] = {
    "bn_branches": (bn_branches, "sparse_categorical_crossentropy"),
    "nested_bn": (nested_bn, "binary_crossentropy"),
}


def seeded_keras_model(keras: ModuleType, name: str) -> Any:
    """The Keras model in float64 with every variable (moving statistics too) drawn."""
    from keras_ref import zoo

    model = zoo.ZooEntry(name, MODELS[name][0], "batchnorm", True, False, "").builder(
        keras, "float64"
    )
    zoo.seed_weights(model, WEIGHT_SEED)
    return model


def keras_optimizer(keras: ModuleType, opt: str) -> Any:
    class_name, kwargs = OPTIMIZERS[opt]
    return getattr(keras.optimizers, class_name)(**kwargs)


# ---------------------------------------------------------------------------------------------
# Batches and weights


@cache
def _images(cifar10_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    train = load_cifar10(cifar10_dir).train
    n = N_STEPS * BATCH
    x = train.images[:n].permute(0, 2, 3, 1).numpy().astype("float64") / 255.0  # NHWC
    return np.ascontiguousarray(x), train.labels[:n].numpy()


def batches(cifar10_dir: Path, name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Keras's NHWC batches; a sigmoid model's labels are binary (animal or not)."""
    x, y = _images(cifar10_dir)
    if MODELS[name][1] == "binary_crossentropy":
        y = np.isin(y, [2, 3, 4, 5, 6, 7]).astype("int64")
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(x), BATCH)]


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def flat(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """A weights tree as ``("block/conv2d/1", array)`` pairs."""
    for layer, value in tree.items():
        if isinstance(value, Mapping):
            yield from flat(value, f"{prefix}{layer}/")
        else:
            for i, a in enumerate(value):
                yield f"{prefix}{layer}/{i}", np.asarray(a)


def keras_flat(keras_model: Any) -> Flat:
    return dict(flat(tree_from_keras_model(keras_model)))


def torch_flat(model: KerasGraph) -> Flat:
    return dict(flat(tree_from_model(model)))


def max_delta(a: Flat, b: Flat) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


# ---------------------------------------------------------------------------------------------
# Trajectories


Run = tuple[list[float], list[Flat], list[np.ndarray]]  # losses, weights after each step, slots


def keras_run(keras: ModuleType, cifar10_dir: Path, name: str, opt: str) -> tuple[Flat, Run]:
    """Keras's ``N_STEPS`` steps: the initial weights, then losses, weights and final slots."""
    from keras_ref import dtype_scope

    keras_model = seeded_keras_model(keras, name)
    initial = keras_flat(keras_model)
    losses, weights = [], []
    with dtype_scope("float64"):
        keras_model.compile(
            optimizer=keras_optimizer(keras, opt), loss=MODELS[name][1], jit_compile=False
        )
        for x, y in batches(cifar10_dir, name):
            losses.append(float(keras_model.train_on_batch(x, y)))
            weights.append(keras_flat(keras_model))
    slots = [np.asarray(v) for v in keras_model.optimizer.variables]
    return initial, (losses, weights, slots)


_KERAS_RUNS: dict[tuple[str, str], tuple[Flat, Run]] = {}


def cached_keras_run(keras: ModuleType, cifar10_dir: Path, name: str, opt: str) -> tuple[Flat, Run]:
    if (name, opt) not in _KERAS_RUNS:
        _KERAS_RUNS[name, opt] = keras_run(keras, cifar10_dir, name, opt)
    return _KERAS_RUNS[name, opt]


def converted(keras: ModuleType, name: str, opt: str) -> tuple[KerasGraph, torch.optim.Optimizer]:
    """The converted float64 model and the optimizer its Keras original is compiled with."""
    from keras_ref import dtype_scope

    keras_model = seeded_keras_model(keras, name)
    with dtype_scope("float64"):
        keras_model.compile(optimizer=keras_optimizer(keras, opt), loss=MODELS[name][1])
    model = torch_cnn.from_keras(keras_model, dtype=torch.float64)
    assert isinstance(model, KerasGraph)
    # Keras has not built its optimizer yet: iterations 0, the learning rate, no slots.
    return model, optimizer_from_keras(model, keras_model)


def torch_run(
    model: KerasGraph,
    optimizer: torch.optim.Optimizer,
    steps: list[tuple[np.ndarray, np.ndarray]],
) -> Run:
    """``fit``'s training step on each batch: losses, weights after each, final slots."""
    model.train()
    step = TrainStep(
        model, optimizer, torch.device("cpu"), bf16=False, channels_last=False, compile=False,
        across_ranks=False, objective=objective_for(model),
    )  # fmt: skip
    losses, weights = [], []
    for x, y in steps:
        loss_sum, _ = step(nchw(x), torch.from_numpy(y), len(y))
        losses.append(float(loss_sum) / len(y))
        weights.append(torch_flat(model))
    trainable = keras_trainable_variables(model)
    slots = keras_optimizer_state(
        optimizer, [v.param for v in trainable], [v.to_keras for v in trainable]
    )
    return losses, weights, slots


def compare(ours: Run, keras_side: Run) -> tuple[float, float, float]:
    """Max |Δ| of the losses, of weights and moving statistics over every step, of the slots."""
    losses = max(abs(a - b) for a, b in zip(ours[0], keras_side[0], strict=True))
    weights = max(max_delta(a, b) for a, b in zip(ours[1], keras_side[1], strict=True))
    slots = max(
        float(np.abs(np.asarray(a, "float64") - np.asarray(b, "float64")).max())
        for a, b in zip(ours[2], keras_side[2], strict=True)
    )
    return losses, weights, slots


# ---------------------------------------------------------------------------------------------
# Step parity


def test_trainable_variables_in_keras_order(keras: ModuleType) -> None:
    """Keras's ``model.trainable_variables`` order: config order (the depthwise conv is called
    before the block but listed after it), nested models recursed, frozen ones left out."""
    for name in MODELS:
        keras_model = seeded_keras_model(keras, name)
        model = torch_cnn.from_keras(keras_model, dtype=torch.float64)
        ours = keras_trainable_variables(model)
        assert [v.path for v in ours] == [v.path for v in keras_model.trainable_variables]
        for v, kv in zip(ours, keras_model.trainable_variables, strict=True):
            assert np.array_equal(v.to_keras(v.param.detach().numpy()), np.asarray(kv)), v.path
        frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
        assert {id(v.param) for v in ours} == {
            id(p) for n, p in model.named_parameters() if n not in frozen
        }
        assert frozen, f"{name} has a frozen layer"


def _check_run(keras: ModuleType, cifar10_dir: Path, name: str, opt: str) -> None:
    initial, keras_side = cached_keras_run(keras, cifar10_dir, name, opt)
    model, optimizer = converted(keras, name, opt)
    assert max_delta(torch_flat(model), initial) == 0.0
    ours = torch_run(model, optimizer, batches(cifar10_dir, name))
    losses, weights, slots = compare(ours, keras_side)
    final = keras_side[1][-1]
    moved = {k: float(np.abs(final[k] - initial[k]).max()) for k in initial}
    print(
        f"{name}/{opt} float64, {N_STEPS} steps: losses max |Δ| {losses:.3g}, weights and "
        f"moving statistics max |Δ| {weights:.3g}, optimizer slots max |Δ| {slots:.3g}"
    )
    # Not vacuous: every variable moved, the frozen layers' not at all (in both frameworks).
    # (A bias that feeds a training BatchNormalization would not: the models have none.)
    frozen = {k for k in initial if k.startswith(("bn_frozen/", "frozen/"))}
    assert all(moved[k] > 1e-4 for k in initial if k not in frozen), moved
    assert all(moved[k] == 0.0 for k in frozen) and (frozen or name != "bn_branches")
    assert losses <= LOSS_ATOL
    assert weights <= WEIGHTS_ATOL
    assert slots <= WEIGHTS_ATOL


# Every optimizer on bn_branches; the nested sigmoid model (binary cross-entropy) with Adam.
CASES = [("bn_branches", opt) for opt in OPTIMIZERS] + [("nested_bn", "adam")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "opt"), CASES)
def test_training_steps_match_keras(
    keras: ModuleType, cifar10_dir: Path, name: str, opt: str
) -> None:
    _check_run(keras, cifar10_dir, name, opt)


# ---------------------------------------------------------------------------------------------
# Wrong BatchNormalization is caught


def _bns(model: torch.nn.Module) -> list[BatchNorm1d | BatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, BatchNorm1d | BatchNorm2d)]


def _unbiased_variance(bn: BatchNorm1d | BatchNorm2d) -> None:
    bn.bessel_moving_variance = True  # what torch's own kernels put in running_var


def _torch_momentum(bn: BatchNorm1d | BatchNorm2d) -> None:
    bn.keras_momentum = 1.0 - bn.keras_momentum  # Keras's momentum passed as torch's


def _torch_eps(bn: BatchNorm1d | BatchNorm2d) -> None:
    bn.eps = 1e-5


WRONG_BN: dict[str, Callable[[BatchNorm1d | BatchNorm2d], None]] = {
    "unbiased_moving_variance": _unbiased_variance,
    "torch_momentum_convention": _torch_momentum,
    "torch_eps_1e-5": _torch_eps,
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(WRONG_BN))
def test_wrong_batchnorm_is_caught(keras: ModuleType, cifar10_dir: Path, variant: str) -> None:
    name, opt = "bn_branches", "adam"
    _, keras_side = cached_keras_run(keras, cifar10_dir, name, opt)
    model, optimizer = converted(keras, name, opt)
    for bn in _bns(model):
        WRONG_BN[variant](bn)
    losses, weights, _ = compare(
        torch_run(model, optimizer, batches(cifar10_dir, name)), keras_side
    )
    print(f"{variant}: losses max |Δ| {losses:.3g}, weights and statistics max |Δ| {weights:.3g}")
    assert weights > WRONG_MIN_MISS


# ---------------------------------------------------------------------------------------------
# Resume from a .keras file


def read_archive_optimizer(path: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    """The compile config's optimizer and ``optimizer/vars/<i>`` straight from the archive.

    Here in the test until ``torch_cnn.porting.keras_files.read_keras_source`` returns them
    (``optimizer_from_keras(model, path)`` then reads the file itself).
    """
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    with h5py.File(io.BytesIO(weights), "r") as f:
        group = f["optimizer/vars"]
        variables = [np.asarray(group[str(i)]) for i in range(len(group))]
    return config["compile_config"]["optimizer"], variables


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    """The same step count, learning rate and slots, bit for bit, parameter by parameter."""
    assert type(a) is type(b) and len(a.param_groups) == len(b.param_groups)
    for ga, gb in zip(a.param_groups, b.param_groups, strict=True):
        assert (ga["step"], ga["lr"]) == (gb["step"], gb["lr"])
        for pa, pb in zip(ga["params"], gb["params"], strict=True):
            sa, sb = a.state[pa], b.state[pb]
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _resume(keras: ModuleType, cifar10_dir: Path, tmp_path: Path, name: str, opt: str) -> None:
    from keras_ref import dtype_scope

    steps = batches(cifar10_dir, name)[: 2 * RESUME_STEPS]
    keras_model = seeded_keras_model(keras, name)
    path = tmp_path / f"{name}.keras"
    with dtype_scope("float64"):
        keras_model.compile(
            optimizer=keras_optimizer(keras, opt), loss=MODELS[name][1], jit_compile=False
        )
        for x, y in steps[:RESUME_STEPS]:
            keras_model.train_on_batch(x, y)
        keras_model.save(path)
        saved = keras_flat(keras_model)
        keras_losses, keras_weights = [], []
        for x, y in steps[RESUME_STEPS:]:
            keras_losses.append(float(keras_model.train_on_batch(x, y)))
            keras_weights.append(keras_flat(keras_model))
        loaded = keras.saving.load_model(path)
    keras_side: Run = (
        keras_losses,
        keras_weights,
        [np.asarray(v) for v in keras_model.optimizer.variables],
    )

    # The file's model, loaded back by Keras, converted (until the reader lands: see
    # read_archive_optimizer); its optimizer from the live model and from the archive.
    model = torch_cnn.from_keras(loaded, dtype=torch.float64)
    assert isinstance(model, KerasGraph) and max_delta(torch_flat(model), saved) == 0.0
    optimizer = optimizer_from_keras(model, loaded)
    entry, variables = read_archive_optimizer(path)
    assert len(variables) > 2 and int(variables[0]) == RESUME_STEPS
    from_archive = optimizer_from_keras_state(model, entry, variables)
    assert type(from_archive) is type(optimizer)
    assert_same_state(from_archive, optimizer)
    losses, weights, slots = compare(torch_run(model, optimizer, steps[RESUME_STEPS:]), keras_side)

    # The wrong variant: the same weights, the optimizer rebuilt from the config alone.
    fresh_model = torch_cnn.from_keras(loaded, dtype=torch.float64)
    fresh = optimizer_from_keras_state(fresh_model, entry)
    _, miss, _ = compare(torch_run(fresh_model, fresh, steps[RESUME_STEPS:]), keras_side)
    print(
        f"{name}/{opt} resumed from {path.name} after {RESUME_STEPS} Keras steps, "
        f"{RESUME_STEPS} more: losses max |Δ| {losses:.3g}, weights and statistics max |Δ| "
        f"{weights:.3g}, slots {slots:.3g}; optimizer state not restored: {miss:.3g}"
    )
    assert losses <= LOSS_ATOL and weights <= WEIGHTS_ATOL and slots <= WEIGHTS_ATOL
    assert miss > WRONG_MIN_MISS


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "opt"),
    [
        ("nested_bn", "adam"),
        ("bn_branches", "rmsprop_centered"),
        ("bn_branches", "sgd_nesterov"),
        ("bn_branches", "adamw"),
    ],
)
def test_resume_keras_file_matches_keras_continuing(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path, name: str, opt: str
) -> None:
    _resume(keras, cifar10_dir, tmp_path, name, opt)


@pytest.mark.slow
def test_optimizer_from_a_keras_file_path(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path
) -> None:
    """``optimizer_from_keras(model, "m.keras")`` reads the file itself (no TensorFlow): the
    state Keras's own archive members give."""
    from keras_ref import dtype_scope

    name, opt = "bn_branches", "rmsprop_centered"
    keras_model = seeded_keras_model(keras, name)
    path = tmp_path / "m.keras"
    with dtype_scope("float64"):
        keras_model.compile(optimizer=keras_optimizer(keras, opt), loss=MODELS[name][1])
        for x, y in batches(cifar10_dir, name)[:3]:
            keras_model.train_on_batch(x, y)
        keras_model.save(path)
    model = torch_cnn.from_keras(path, dtype=torch.float64)
    entry, variables = read_archive_optimizer(path)
    assert_same_state(
        optimizer_from_keras(model, path), optimizer_from_keras_state(model, entry, variables)
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed_model", MODEL_NAMES)
def test_seed_model_continues_keras_optimizer(
    keras: ModuleType, cifar10_dir: Path, seed_model: str
) -> None:
    """A seed architecture converts to its registered model (``KerasStyleNet``); its
    optimizer state resumes too (the Flatten → Dense rows permuted in every slot)."""
    from keras_ref import dtype_scope
    from torch_cnn.porting import torch_to_keras

    keras_model, _ = build_seeded_pair(keras, seed_model, "float64", seed=WEIGHT_SEED)
    steps = batches(cifar10_dir, "bn_branches")[:6]
    # What fit's objective is: cross-entropy from the logits of a linear head (model_cifar10).
    from_logits = keras_model.layers[-1].get_config()["activation"] == "linear"
    with dtype_scope("float64"):
        keras_model.compile(
            optimizer=keras.optimizers.SGD(0.002, momentum=0.9, nesterov=True),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
            jit_compile=False,
        )
        for x, y in steps[:3]:
            keras_model.train_on_batch(x, y)
        model = torch_cnn.from_keras(keras_model, dtype=torch.float64)
        assert isinstance(model, KerasStyleNet)
        trainable = keras_trainable_variables(model)
        assert [tuple(v.shape) for v in keras_model.trainable_variables] == [
            v.shape for v in trainable
        ]
        optimizer = optimizer_from_keras(model, keras_model)
        saved = read_keras_optimizer(keras_model)
        assert saved is not None
        fresh_model = torch_cnn.from_keras(keras_model, dtype=torch.float64)
        fresh = optimizer_from_keras_state(fresh_model, saved[0])  # the config alone: wrong
        keras_losses = [float(keras_model.train_on_batch(x, y)) for x, y in steps[3:]]
    keras_final = [np.asarray(w) for w in keras_model.get_weights()]

    def continue_in_torch(
        model: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[float, float]:
        model.train()
        step = TrainStep(
            model, optimizer, torch.device("cpu"), bf16=False, channels_last=False,
            compile=False, across_ranks=False, objective=objective_for(model),
        )  # fmt: skip
        losses = [
            float(step(nchw(x), torch.from_numpy(y), len(y))[0]) / len(y) for x, y in steps[3:]
        ]
        final = [a for layer in torch_to_keras(model) for a in layer]
        delta = max(float(np.abs(a - b).max()) for a, b in zip(final, keras_final, strict=True))
        return max(abs(a - b) for a, b in zip(losses, keras_losses, strict=True)), delta

    loss_delta, delta = continue_in_torch(model, optimizer)
    _, miss = continue_in_torch(fresh_model, fresh)
    print(
        f"{seed_model} resumed with Keras's SGD state: losses |Δ| {loss_delta:.3g}, weights "
        f"{delta:.3g}; without the state: weights {miss:.3g}"
    )
    assert loss_delta <= LOSS_ATOL and delta <= WEIGHTS_ATOL
    assert miss > WRONG_MIN_MISS
