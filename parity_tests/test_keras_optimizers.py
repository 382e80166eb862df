"""torch_cnn.optim's Keras optimizers against live ``keras.optimizers``, bit for bit.

- Adam, AdamW, SGD and RMSprop and their variants (momentum, nesterov, centered,
  amsgrad, weight decay, clipping): from identical float32 and float64 weights and
  gradients (a few tensors of different shapes, gradients changing every step over
  seven decades), ``optimizer.apply_gradients`` against ``step()``: 0 ulps, except
  where a gradient norm decides the result (``clipnorm``, ``global_clipnorm``): Keras's
  norm is a sum in Eigen's order, torch's in its own, ≤ NORM_ULPS apart.
- torch's own SGD, RMSprop and AdamW with Keras's hyperparameters miss, and so do
  this package's optimizers with one Keras convention undone (where a scalar is
  rounded, when weight decay is applied).
- A ``.keras`` archive saved after ``train_on_batch``: its optimizer config and
  ``optimizer/vars`` (equal to the live ``optimizer.variables``) loaded into torch, then
  10 more steps in both frameworks from the same weights and batches (float64):
  losses, weights and optimizer variables ≤ 1e-10; without the saved state they miss.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_cnn.optim.base
from torch_cnn.optim import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KERAS_ADAM_EPSILON,
    KERAS_RMSPROP_EPSILON,
    KERAS_RMSPROP_RHO,
    KERAS_SGD_LEARNING_RATE,
    KerasAdam,
    KerasAdamW,
    KerasRMSprop,
    KerasSGD,
    keras_optimizer_state,
    load_keras_optimizer_state,
    optimizer_from_keras_config,
    weight_decay_param_groups,
)
from torch_cnn.optim.base import Scalars
from torch_cnn.optim.ieee import as_dtype, tf_cast
from torch_cnn.porting import (
    conv_kernel_to_torch,
    conv_weight_to_keras,
    dense_kernel_to_torch,
    dense_weight_to_keras,
)

pytestmark = pytest.mark.keras

SHAPES = [(3, 3, 2, 4), (4,), (16, 5)]
NAMES = ["kernel", "bias", "dense_kernel"]  # for exclude_from_weight_decay
STEPS = 20
NORM_ULPS = 4  # clipnorm/global_clipnorm: the norm's summation order (measured: ≤ 2)
TRAJECTORY_ATOL_FLOAT64 = 1e-10

Arrays = list[np.ndarray]
KerasMaker = Callable[[Any], Any]  # keras.optimizers module → optimizer
TorchMaker = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]

# name: (Keras optimizer, the torch one); "norm" in the name: a norm decides the clipping.
CASES: dict[str, tuple[KerasMaker, TorchMaker]] = {
    "sgd": (lambda k: k.SGD(), KerasSGD),
    "sgd_nesterov": (
        lambda k: k.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
        lambda ps: KerasSGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    ),
    "sgd_weight_decay": (
        lambda k: k.SGD(momentum=0.5, weight_decay=0.01),
        lambda ps: KerasSGD(ps, momentum=0.5, weight_decay=0.01),
    ),
    "rmsprop": (lambda k: k.RMSprop(), KerasRMSprop),
    "rmsprop_momentum": (
        lambda k: k.RMSprop(momentum=0.9),
        lambda ps: KerasRMSprop(ps, momentum=0.9),
    ),
    "rmsprop_centered_momentum": (
        lambda k: k.RMSprop(rho=0.8, momentum=0.5, centered=True),
        lambda ps: KerasRMSprop(ps, rho=0.8, momentum=0.5, centered=True),
    ),
    "adam": (lambda k: k.Adam(), KerasAdam),
    "adam_weight_decay": (
        lambda k: k.Adam(weight_decay=0.1),
        lambda ps: KerasAdam(ps, weight_decay=0.1),
    ),
    "adamw": (lambda k: k.AdamW(), KerasAdamW),
    "adamw_amsgrad": (
        lambda k: k.AdamW(learning_rate=0.01, weight_decay=0.05, amsgrad=True),
        lambda ps: KerasAdamW(ps, lr=0.01, weight_decay=0.05, amsgrad=True),
    ),
    "adam_clipvalue": (
        lambda k: k.Adam(clipvalue=1e-3),
        lambda ps: KerasAdam(ps, clipvalue=1e-3),
    ),
    "sgd_clipnorm": (
        lambda k: k.SGD(momentum=0.9, clipnorm=0.01),
        lambda ps: KerasSGD(ps, momentum=0.9, clipnorm=0.01),
    ),
    "adam_clipnorm": (
        lambda k: k.Adam(clipnorm=0.01),
        lambda ps: KerasAdam(ps, clipnorm=0.01),
    ),
    "rmsprop_global_clipnorm": (
        lambda k: k.RMSprop(global_clipnorm=0.01),
        lambda ps: KerasRMSprop(ps, global_clipnorm=0.01),
    ),
}


def toy_problem(dtype: str, seed: int = 0) -> tuple[Arrays, list[Arrays]]:
    """Weights and STEPS gradients; each element's scale fixed in 1e-6..1 and the step's in
    1e-2..10, so epsilon matters for some elements and clipping acts at some steps only."""
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=s).astype(dtype) for s in SHAPES]
    scales = [10.0 ** rng.uniform(-6, 0, size=s) for s in SHAPES]
    grads = [
        [
            (rng.normal(size=s) * sc * 10.0 ** (i % 4 - 2)).astype(dtype)
            for s, sc in zip(SHAPES, scales, strict=True)
        ]
        for i in range(STEPS)
    ]
    return w0, grads


@cache
def keras_result(case: str, dtype: str) -> tuple[Arrays, int]:
    """The Keras optimizer's weights after STEPS ``apply_gradients``, and its ``iterations``."""
    import keras
    import tensorflow as tf

    import keras_ref

    w0, grads = toy_problem(dtype)
    with keras_ref.dtype_scope(dtype):
        variables = [keras.Variable(w, dtype=dtype) for w in w0]
        optimizer = CASES[case][0](keras.optimizers)
        for step in grads:
            optimizer.apply_gradients(
                [(tf.constant(g), v) for g, v in zip(step, variables, strict=True)]
            )
    return [np.asarray(v) for v in variables], int(optimizer.iterations)


def torch_result(make: TorchMaker, dtype: str, seed: int = 0) -> Arrays:
    w0, grads = toy_problem(dtype, seed)
    params = [torch.nn.Parameter(torch.from_numpy(w.copy())) for w in w0]
    optimizer = make(params)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = torch.from_numpy(g.copy())
        optimizer.step()
    return [p.detach().numpy() for p in params]


def ulps(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    """Largest |got - expected| in units of expected's float spacing, over all tensors."""
    return max(
        float((np.abs(a - b) / np.spacing(np.abs(b))).max())
        for a, b in zip(got, expected, strict=True)
    )


def max_abs(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_keras_bit_for_bit(keras: ModuleType, case: str, dtype: str) -> None:
    expected, iterations = keras_result(case, dtype)
    got = torch_result(CASES[case][1], dtype)
    assert iterations == STEPS
    assert max_abs(expected, toy_problem(dtype)[0]) > 1e-3, "the steps should move the weights"
    off = ulps(got, expected)
    print(f"{case} {dtype}: {off:g} ulps from Keras")
    assert off <= (NORM_ULPS if "norm" in case else 0)


def test_clipping_acts_at_some_steps_only(keras: ModuleType) -> None:
    """The clip cases clip: the same optimizer without clipping ends far away."""
    unclipped: dict[str, TorchMaker] = {
        "adam_clipvalue": KerasAdam,
        "sgd_clipnorm": lambda ps: KerasSGD(ps, momentum=0.9),
        "adam_clipnorm": KerasAdam,
        "rmsprop_global_clipnorm": KerasRMSprop,
    }
    for case, make in unclipped.items():
        clipped, _ = keras_result(case, "float64")
        assert max_abs(clipped, torch_result(make, "float64")) > 1e-4, case


def test_exclude_from_weight_decay(keras: ModuleType) -> None:
    """Keras's ``exclude_from_weight_decay(var_names=["bias"])`` is a param group without decay."""
    import tensorflow as tf

    import keras_ref

    w0, grads = toy_problem("float64", seed=3)
    with keras_ref.dtype_scope("float64"):
        variables = [keras.Variable(w, name=n) for w, n in zip(w0, NAMES, strict=True)]
        optimizer = keras.optimizers.AdamW(learning_rate=0.05, weight_decay=0.5)
        optimizer.exclude_from_weight_decay(var_names=["bias"])
        for step in grads:
            optimizer.apply_gradients(
                [(tf.constant(g), v) for g, v in zip(step, variables, strict=True)]
            )
    expected = [np.asarray(v) for v in variables]

    def grouped(ps: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        groups = weight_decay_param_groups(zip(NAMES, ps, strict=True), ["bias"])
        return KerasAdamW(groups, lr=0.05, weight_decay=0.5)

    assert ulps(torch_result(grouped, "float64", seed=3), expected) == 0
    everything = torch_result(lambda ps: KerasAdamW(ps, lr=0.05, weight_decay=0.5), "float64", 3)
    assert max_abs(everything, expected) > 1e-3


@pytest.mark.parametrize("case", ["sgd_nesterov", "rmsprop_momentum", "adamw_amsgrad"])
def test_lr_dtype_matches_float64_variables_under_float32_floatx(
    keras: ModuleType, case: str
) -> None:
    """Keras's learning-rate variable follows floatx: float32 here, cast to the float64
    variables (and so in the weight decay too); ``lr_dtype=torch.float32`` says so."""
    import tensorflow as tf

    import keras_ref

    w0, grads = toy_problem("float64", seed=4)
    with keras_ref.dtype_scope("float32"):
        variables = [keras.Variable(w, dtype="float64") for w in w0]
        optimizer = CASES[case][0](keras.optimizers)
        for step in grads:
            optimizer.apply_gradients(
                [(tf.constant(g), v) for g, v in zip(step, variables, strict=True)]
            )
    expected = [np.asarray(v) for v in variables]
    make = CASES[case][1]

    def float32_lr(ps: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        optimizer = make(ps)
        for group in optimizer.param_groups:
            group["lr_dtype"] = torch.float32
        return optimizer

    assert ulps(torch_result(float32_lr, "float64", seed=4), expected) == 0
    plain = torch_result(make, "float64", seed=4)
    print(f"{case}: lr rounded to float64, not float32: {ulps(plain, expected):.3g} ulps")
    assert ulps(plain, expected) > 0


# ---------------------------------------------------------------------------------------------
# Deliberately wrong optimizers must miss


class _SGDMomentumStraight(KerasSGD):
    """Momentum rounded straight to float64 (Keras: ``ops.cast`` through float32)."""

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        return {
            **super()._scalars(group, dtype, local_step),
            "momentum": as_dtype(group["momentum"], dtype),
        }


class _RMSpropRhoThroughFloat32(KerasRMSprop):
    """rho cast through float32 (Keras: a Python float straight into ``ops.multiply``)."""

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        return {**super()._scalars(group, dtype, local_step), "rho": tf_cast(group["rho"], dtype)}


class _AdamDecayAfterUpdate(KerasAdam):
    """Weight decay after the Adam update (Keras: before it, on the old weights)."""

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        super().step(closure)
        with torch.no_grad():
            for p in self.param_groups[0]["params"]:
                p.sub_(p * tf_cast(0.1, p.dtype) * as_dtype(1e-3, p.dtype))
        return None


WRONG: dict[str, tuple[str, TorchMaker, float]] = {
    # name: (the Keras case it must miss, the wrong optimizer, the least max |Δ| expected)
    "torch SGD": ("sgd", lambda ps: torch.optim.SGD(ps, lr=KERAS_SGD_LEARNING_RATE), 0.0),
    "torch SGD nesterov": (
        "sgd_nesterov",
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
        0.0,
    ),
    "torch RMSprop": (
        "rmsprop",
        lambda ps: torch.optim.RMSprop(
            ps, lr=1e-3, alpha=KERAS_RMSPROP_RHO, eps=KERAS_RMSPROP_EPSILON
        ),
        1e-4,
    ),
    "torch RMSprop centered": (
        "rmsprop_centered_momentum",
        lambda ps: torch.optim.RMSprop(
            ps, lr=1e-3, alpha=0.8, eps=KERAS_RMSPROP_EPSILON, momentum=0.5, centered=True
        ),
        1e-4,
    ),
    "torch AdamW": (
        "adamw",
        lambda ps: torch.optim.AdamW(
            ps,
            lr=1e-3,
            betas=(KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
            eps=KERAS_ADAM_EPSILON,
            weight_decay=0.004,
        ),
        1e-4,
    ),
    "SGD momentum not through float32": (
        "sgd_nesterov",
        lambda ps: _SGDMomentumStraight(ps, lr=0.05, momentum=0.9, nesterov=True),
        0.0,
    ),
    "RMSprop rho through float32": ("rmsprop", _RMSpropRhoThroughFloat32, 0.0),
    "Adam decay after the update": ("adam_weight_decay", _AdamDecayAfterUpdate, 1e-9),
}


@pytest.mark.parametrize("wrong", list(WRONG))
def test_wrong_optimizers_miss(keras: ModuleType, wrong: str) -> None:
    """float64, where every one of these conventions shows: not one is within 0 ulps."""
    case, make, least = WRONG[wrong]
    expected, _ = keras_result(case, "float64")
    got = torch_result(make, "float64")
    off, miss = ulps(got, expected), max_abs(got, expected)
    print(f"{wrong} vs Keras {case}: {off:.3g} ulps, max |Δ| {miss:.3g}")
    assert off > 0 and miss > least


def test_weight_decay_through_float32_matters(
    keras: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keras casts weight_decay with ``tf.cast`` (through float32); straight to float64 misses."""
    expected, _ = keras_result("sgd_weight_decay", "float64")
    make = CASES["sgd_weight_decay"][1]
    assert ulps(torch_result(make, "float64"), expected) == 0
    monkeypatch.setattr(torch_cnn.optim.base, "tf_cast", as_dtype)
    assert ulps(torch_result(make, "float64"), expected) > 0


# ---------------------------------------------------------------------------------------------
# A .keras archive's optimizer, continued in torch

BATCH = 8
ARCHIVE_STEPS = 3  # train_on_batch calls before saving
MORE_STEPS = 10  # then in both frameworks
ARCHIVE_CASES: dict[str, Callable[[Any], Any]] = {
    "Adam": lambda k: k.Adam(learning_rate=0.01, amsgrad=True),
    "AdamW": lambda k: k.AdamW(learning_rate=0.01, weight_decay=0.05),
    "SGD": lambda k: k.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "RMSprop": lambda k: k.RMSprop(momentum=0.5, centered=True, clipvalue=0.5),
}
KERAS_TO_TORCH = [conv_kernel_to_torch, np.asarray, dense_kernel_to_torch, np.asarray]
TORCH_TO_KERAS = [conv_weight_to_keras, np.asarray, dense_weight_to_keras, np.asarray]


class SmallNet(torch.nn.Module):
    """Keras's Conv2D(3, 3, relu) → Flatten → Dense(4) on 6×6×2 inputs, flattened in (H, W, C) order."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 3, 3, dtype=torch.float64)
        self.fc = torch.nn.Linear(48, 4, dtype=torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, 6, 6, 2), Keras's layout
        y = F.relu(self.conv(x.permute(0, 3, 1, 2)))  # (N, 3, 4, 4)
        return self.fc(y.permute(0, 2, 3, 1).flatten(1))  # type: ignore[no-any-return]

    def in_keras_order(self) -> list[torch.nn.Parameter]:
        return [self.conv.weight, self.conv.bias, self.fc.weight, self.fc.bias]


def batches(n: int, seed: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(BATCH, 6, 6, 2)), rng.integers(0, 4, size=BATCH)) for _ in range(n)]


def read_archive(path: Path) -> tuple[dict[str, Any], Arrays]:
    """The optimizer's config and ``optimizer/vars/0..n-1`` from a ``.keras`` file."""
    import h5py

    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    with h5py.File(io.BytesIO(weights), "r") as f:
        group = f["optimizer"]["vars"]
        variables = [np.asarray(group[str(i)]) for i in range(len(group))]
    return config["compile_config"]["optimizer"], variables


def keras_archive(keras: ModuleType, case: str, path: Path) -> tuple[Any, Any]:
    """A float64 Keras model after ARCHIVE_STEPS train_on_batch calls, saved to ``path``."""
    import keras_ref

    with keras_ref.dtype_scope("float64"):
        inputs = keras.Input((6, 6, 2))
        x = keras.layers.Conv2D(3, 3, activation="relu")(inputs)
        outputs = keras.layers.Dense(4)(keras.layers.Flatten()(x))
        model = keras.Model(inputs, outputs)
        rng = np.random.default_rng(7)
        model.set_weights([rng.uniform(-0.5, 0.5, w.shape) for w in model.get_weights()])
        optimizer = ARCHIVE_CASES[case](keras.optimizers)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            run_eagerly=True,
        )
        for x_batch, y_batch in batches(ARCHIVE_STEPS, seed=6):
            model.train_on_batch(x_batch, y_batch)
    model.save(path)
    return model, optimizer


def torch_continues(
    model: SmallNet, optimizer: torch.optim.Optimizer, steps: list[tuple[np.ndarray, np.ndarray]]
) -> list[float]:
    losses = []
    for x, y in steps:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("case", list(ARCHIVE_CASES))
def test_keras_archive_optimizer_continues_in_torch(
    keras: ModuleType, case: str, tmp_path: Path
) -> None:
    import keras_ref

    keras_model, keras_optimizer = keras_archive(keras, case, tmp_path / "model.keras")
    config, variables = read_archive(tmp_path / "model.keras")
    live = [np.asarray(v) for v in keras_optimizer.variables]
    assert config["class_name"] == case
    assert len(variables) == len(live) and all(
        np.array_equal(a, b) for a, b in zip(variables, live, strict=True)
    )
    assert int(variables[0]) == ARCHIVE_STEPS

    def torch_pair(restore: bool) -> tuple[SmallNet, torch.optim.Optimizer]:
        model = SmallNet()
        with torch.no_grad():
            for p, w, f in zip(
                model.in_keras_order(), keras_model.get_weights(), KERAS_TO_TORCH, strict=True
            ):
                p.copy_(torch.from_numpy(np.ascontiguousarray(f(w))))
        optimizer = optimizer_from_keras_config(config, model.in_keras_order())
        if restore:
            load_keras_optimizer_state(optimizer, variables, model.in_keras_order(), KERAS_TO_TORCH)
        return model, optimizer

    model, optimizer = torch_pair(restore=True)
    restored = keras_optimizer_state(optimizer, model.in_keras_order(), TORCH_TO_KERAS)
    assert all(np.array_equal(a, b) for a, b in zip(restored, variables, strict=True))

    steps = batches(MORE_STEPS)
    with keras_ref.dtype_scope("float64"):
        keras_losses = [float(keras_model.train_on_batch(x, y)) for x, y in steps]
    losses = torch_continues(model, optimizer, steps)
    expected = keras_model.get_weights()
    got = [
        f(p.detach().numpy()) for p, f in zip(model.in_keras_order(), TORCH_TO_KERAS, strict=True)
    ]
    loss_gap = max(abs(a - b) for a, b in zip(losses, keras_losses, strict=True))
    weight_gap = max_abs(got, expected)
    state_gap = max_abs(
        keras_optimizer_state(optimizer, model.in_keras_order(), TORCH_TO_KERAS)[1:],
        [np.asarray(v) for v in keras_optimizer.variables][1:],
    )
    print(
        f"{case}: losses {loss_gap:.3g}, weights {weight_gap:.3g}, optimizer state {state_gap:.3g}"
    )
    assert optimizer.iterations == int(keras_optimizer.iterations) == ARCHIVE_STEPS + MORE_STEPS
    assert max(loss_gap, weight_gap, state_gap) <= TRAJECTORY_ATOL_FLOAT64

    fresh, fresh_optimizer = torch_pair(restore=False)  # the config alone: state starts at zero
    torch_continues(fresh, fresh_optimizer, steps)
    miss = max_abs(
        [
            f(p.detach().numpy())
            for p, f in zip(fresh.in_keras_order(), TORCH_TO_KERAS, strict=True)
        ],
        expected,
    )
    print(f"{case} without the saved state: weights {miss:.3g}")
    assert miss > 1e3 * TRAJECTORY_ATOL_FLOAT64
