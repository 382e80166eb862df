"""Training parity with Keras: losses, gradients, Adam trajectories and initialisation.

- The losses the seeds compile, written in torch: model_cnn's categorical
  cross-entropy on its softmax output (Keras computes it from the softmax's
  logits, not from clipped probabilities) and model_cifar10's sparse
  cross-entropy from logits.
- One backward pass from identical weights: every gradient within 1e-12 (float64).
- Adam steps on the same real CIFAR-10 batches (32 images each, file order):
  Keras ``train_on_batch`` with ``keras.optimizers.Adam`` against torch with
  ``KerasAdam``; per-step losses and final weights within 1e-10 over 50 steps
  (float64). In float32, losses and weights within 1e-4 relative at every step for
  as long as Keras agrees with itself in float32: Keras compiled with XLA
  (another order of float32 operations) is the yardstick. model_cifar10's ReLUs and
  max-pools make float32 training chaotic, so that is fewer than 50 steps for it (see
  ``float32_agreement``). ``torch.optim.Adam`` with Keras's hyperparameters must miss.
- ``KerasAdam`` against a NumPy transcription of Keras's update and against
  the live Keras optimizer, with and without amsgrad.
- ``create_model``'s initialisation against Keras's, statistically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import DTYPES, MODEL_NAMES
from torch_cnn.models import KerasStyleNet
from torch_cnn.optim import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KERAS_ADAM_EPSILON,
    KERAS_ADAM_LEARNING_RATE,
    KerasAdam,
)
from torch_cnn.porting import torch_to_keras

# model_cifar10's float32 trajectories are chaotic: a rounding difference of ~1e-7 (TF's and
# torch's convolutions sum in different orders) tips a ReLU/max-pool decision after a dozen
# or more steps and the runs drift apart, by up to 0.3 relative in the weights by step 50.
# Keras does the same against itself: its default and XLA-compiled float32 runs from the
# same weights and batches held 1e-4 for 11 to 27 steps over 7 starting points (torch_cnn
# and Keras: 12 to 50), while float64 torch and Keras stay within 1e-13 for all 50 steps.
# So no step count is chosen here: the float32 test measures how many steps Keras's XLA run
# follows Keras (all 50 for the smooth model_cnn) and holds torch to 1e-4 over those, less
# FLOAT32_SLACK_STEPS: which of two float32 runs a ReLU flip hits first is chance (over the 7
# starts, torch_cnn fell short of XLA's count once, by 3 steps; it went further in 4).
FLOAT32_MIN_AGREEMENT = 10  # fewer steps than this and the float32 test would show little
FLOAT32_SLACK_STEPS = 5

GRAD_ATOL_FLOAT64 = 1e-12
TRAJECTORY_ATOL_FLOAT64 = 1e-10


def grads_in_keras_layout(model: KerasStyleNet) -> list[np.ndarray]:
    """The model's ``.grad``s, transformed as its weights would be, in Keras's weight order."""
    grads = {name: p.grad for name, p in model.named_parameters()}
    shadow = torch_cnn.create_model(model.name, dtype=next(model.parameters()).dtype)
    for name, p in shadow.named_parameters():
        g = grads[name]
        assert g is not None, f"{model.name}: {name} has no gradient"
        p.data = g.detach().clone()
    return [a for layer in torch_to_keras(shadow) for a in layer]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_step_gradients_match_keras(
    side_by_side: ModuleType, cifar10_dir: Path, name: str
) -> None:
    import tensorflow as tf

    from keras_ref import dtype_scope, recipe

    sbs = side_by_side
    keras_model, model = sbs.build_seeded_pair(name, "float64", seed=sbs.WEIGHT_SEED)
    images, targets = sbs.train_batches(cifar10_dir, name, "float64")[0]
    with dtype_scope("float64"):
        loss_obj = recipe.loss(name)
        with tf.GradientTape() as tape:
            keras_value = loss_obj(targets, keras_model(images, training=True))
        keras_grads = tape.gradient(keras_value, keras_model.trainable_weights)
    assert keras_value.dtype == tf.float64

    model.train()
    x, y = sbs.to_torch_batch(images, targets)
    loss = sbs.TORCH_LOSSES[name](model, x, y)
    loss.backward()
    torch_grads = grads_in_keras_layout(model)

    assert abs(loss.item() - float(keras_value)) <= GRAD_ATOL_FLOAT64
    assert len(torch_grads) == len(keras_grads)
    worst = 0.0
    for i, (tg, kg) in enumerate(zip(torch_grads, keras_grads, strict=True)):
        kg = np.asarray(kg)
        assert tg.shape == kg.shape, f"{name} gradient {i}: torch {tg.shape}, Keras {kg.shape}"
        assert np.abs(kg).max() > 1e-6, f"{name} gradient {i} is all but zero: nothing is tested"
        worst = max(worst, float(np.abs(tg - kg).max()))
    print(f"{name} float64 gradients: max |Δ| {worst:.3g}")
    assert worst <= GRAD_ATOL_FLOAT64


def test_softmax_cce_uses_logits_not_clipped_probabilities(
    side_by_side: ModuleType, cifar10_dir: Path
) -> None:
    """Saturate model_cnn's softmax: Keras's loss follows log-softmax, not the 1e-7 clip."""
    from keras_ref import dtype_scope, recipe

    sbs = side_by_side
    keras_model, model = sbs.build_seeded_pair("model_cnn", "float64", seed=sbs.WEIGHT_SEED)
    kernel, bias = keras_model.layers[-1].get_weights()
    keras_model.layers[-1].set_weights([kernel * 200.0, bias])
    with torch.no_grad():
        model.get_parameter("fc.weight").mul_(200.0)
    images, targets = sbs.train_batches(cifar10_dir, "model_cnn", "float64")[0]
    with dtype_scope("float64"):
        keras_model.compile(loss=recipe.loss("model_cnn"), jit_compile=False)
        keras_value = keras_model.test_on_batch(images, targets, return_dict=True)["loss"]
    x, y = sbs.to_torch_batch(images, targets)
    with torch.no_grad():
        from_logits = sbs.cce_on_softmax(model, x, y).item()
        clipped = sbs.clipped_cce_on_probs(model, x, y).item()
    assert clipped < from_logits - 1.0, "the batch should saturate the softmax past the clip"
    assert abs(keras_value - from_logits) <= 1e-12 * from_logits
    assert abs(keras_value - clipped) > 1.0


# ---------------------------------------------------------------------------------------------
# Trajectories


@cache
def keras_run(
    cifar10_dir: Path, name: str, dtype: str, xla: bool = False, seed: int | None = None
) -> tuple[list[float], list[np.ndarray], list[np.ndarray], list[list[np.ndarray]]]:
    """Keras's 50 steps (cached: several tests compare against the same run): losses,
    initial weights, final weights and the weights after every step."""
    from keras_ref import side_by_side as sbs

    initial, steps = sbs.keras_steps(
        cifar10_dir, name, dtype, xla=xla, seed=sbs.WEIGHT_SEED if seed is None else seed
    )
    return [loss for loss, _ in steps], initial, steps[-1][1], [w for _, w in steps]


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_float64_adam_trajectory_matches_keras(
    side_by_side: ModuleType, cifar10_dir: Path, name: str
) -> None:
    sbs = side_by_side
    keras_losses, initial, keras_final, _ = keras_run(cifar10_dir, name, "float64")
    steps = sbs.torch_steps(cifar10_dir, name, "float64", KerasAdam, every_step=False)
    losses, final = [loss for loss, _ in steps], steps[-1][1]
    assert len(losses) == len(keras_losses) == sbs.N_STEPS
    moved = sbs.max_abs(initial, keras_final)
    assert moved > 1e-2, f"{name}: Adam steps should move the weights; moved {moved:.3g}"
    assert keras_losses[-1] < keras_losses[0], "training should lower the loss"
    loss_delta = max(abs(a - b) for a, b in zip(losses, keras_losses, strict=True))
    print(
        f"{name} float64: losses max |Δ| {loss_delta:.3g}, final weights max |Δ| "
        f"{sbs.max_abs(final, keras_final):.3g}, max rel {sbs.max_rel(final, keras_final):.3g}"
    )
    assert loss_delta <= TRAJECTORY_ATOL_FLOAT64
    assert sbs.max_abs(final, keras_final) <= TRAJECTORY_ATOL_FLOAT64


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_float32_adam_trajectory_matches_keras_as_far_as_keras_matches_itself(
    side_by_side: ModuleType, cifar10_dir: Path, name: str
) -> None:
    """float32: torch_cnn follows Keras to 1e-4 for every step that Keras's XLA run follows it."""
    sbs = side_by_side

    def steps(xla: bool) -> list[tuple[float, list[np.ndarray]]]:
        losses, _, _, weights = keras_run(cifar10_dir, name, "float32", xla)
        return list(zip(losses, weights, strict=True))

    reference = steps(xla=False)
    yardstick = sbs.float32_agreement(steps(xla=True), reference)
    ours = sbs.float32_agreement(sbs.torch_steps(cifar10_dir, name, "float32"), reference)
    print(
        f"{name} float32, steps within 1e-4 of Keras: torch_cnn {ours}, Keras with XLA "
        f"{yardstick} (of {sbs.N_STEPS})"
    )
    assert yardstick >= FLOAT32_MIN_AGREEMENT, "Keras should agree with itself for a while"
    # Where Keras agrees with itself for all 50 steps (model_cnn), torch_cnn must too.
    required = sbs.N_STEPS if yardstick == sbs.N_STEPS else yardstick - FLOAT32_SLACK_STEPS
    assert ours >= max(required, FLOAT32_MIN_AGREEMENT)


@pytest.mark.slow
def test_float32_trajectories_are_chaotic_in_keras_itself(
    side_by_side: ModuleType, cifar10_dir: Path
) -> None:
    """Why model_cifar10's float32 trajectory is not held to 1e-4 over all 50 steps.

    From the same weights and batches, Keras in float32 and Keras in float64 (the same
    arithmetic, rounded differently) part far past 1e-4 by step 50 (from this start, already
    by step 20): the ReLU/max-pool decisions amplify rounding. No float32 implementation,
    Keras's own included, can hold a 50-step float32 trajectory of model_cifar10 to 1e-4;
    float64 torch_cnn and Keras hold it to 1e-10 (test_float64_adam_trajectory_matches_keras).
    """
    sbs = side_by_side
    name = "model_cifar10"
    losses32, _, final32, _ = keras_run(cifar10_dir, name, "float32", seed=1)
    losses64, _, final64, _ = keras_run(cifar10_dir, name, "float64", seed=1)
    rel = np.abs(np.subtract(losses32, losses64)) / np.abs(losses64)
    drift = sbs.max_rel(final32, [w.astype("float32") for w in final64])
    print(
        f"Keras float32 vs Keras float64, {name}, {sbs.N_STEPS} steps: losses rel |Δ| "
        f"{rel.max():.3g}, final weights rel |Δ| {drift:.3g}"
    )
    assert rel[0] <= sbs.TRAJECTORY_RTOL_FLOAT32  # the same start...
    assert drift > 100 * sbs.TRAJECTORY_RTOL_FLOAT32  # ...and no agreement 50 steps later


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_torch_adam_misses_keras_trajectory(
    side_by_side: ModuleType, cifar10_dir: Path, name: str
) -> None:
    """torch.optim.Adam with Keras's hyperparameters leaves the float64 tolerance far behind."""
    sbs = side_by_side
    _, _, keras_final, _ = keras_run(cifar10_dir, name, "float64")

    def torch_adam(params: Iterator[torch.nn.Parameter]) -> torch.optim.Optimizer:
        betas = (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2)
        return torch.optim.Adam(params, KERAS_ADAM_LEARNING_RATE, betas, KERAS_ADAM_EPSILON)

    steps = sbs.torch_steps(cifar10_dir, name, "float64", torch_adam, every_step=False)
    miss = sbs.max_abs(steps[-1][1], keras_final)
    print(f"{name} float64 torch.optim.Adam: final weights max |Δ| {miss:.3g}")
    assert miss > 1e3 * TRAJECTORY_ATOL_FLOAT64


# ---------------------------------------------------------------------------------------------
# KerasAdam on a toy tensor: a NumPy transcription, the live Keras optimizer, torch's Adam

TOY_STEPS = 20


def toy_problem(dtype: str, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Weights and TOY_STEPS gradients whose sizes span 1e-10 to 10, so epsilon matters for some."""
    rng = np.random.default_rng(seed)
    w0 = rng.normal(size=500).astype(dtype)
    scale = 10.0 ** rng.uniform(-10, 1, size=500)
    grads = [(rng.normal(size=500) * scale).astype(dtype) for _ in range(TOY_STEPS)]
    return w0, grads


def numpy_keras_adam(
    w0: np.ndarray,
    grads: Sequence[np.ndarray],
    *,
    amsgrad: bool,
    round_betas_to_float32: bool = True,
) -> np.ndarray:
    """``keras.optimizers.Adam.update_step`` in NumPy, every scalar in the variable's dtype.

    Keras casts β₁, β₂ with ``tf.cast(python_float, dtype)``, which goes through float32;
    ``round_betas_to_float32=False`` is the textbook reading, for showing that this matters.
    """
    dt = w0.dtype.type
    beta_1, beta_2 = KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2
    if round_betas_to_float32:
        b1, b2 = dt(np.float32(beta_1)), dt(np.float32(beta_2))
    else:
        b1, b2 = dt(beta_1), dt(beta_2)
    w, m, v, v_hat = w0.copy(), np.zeros_like(w0), np.zeros_like(w0), np.zeros_like(w0)
    for step, g in enumerate(grads, start=1):
        t = dt(step)
        alpha = dt(KERAS_ADAM_LEARNING_RATE) * np.sqrt(dt(1) - b2**t) / (dt(1) - b1**t)
        m += (g - m) * dt(1 - beta_1)
        v += (g * g - v) * dt(1 - beta_2)
        denom_v = v
        if amsgrad:
            v_hat = np.maximum(v_hat, v)
            denom_v = v_hat
        w -= (m * alpha) / (np.sqrt(denom_v) + dt(KERAS_ADAM_EPSILON))
    return w


def run_torch_optimizer(
    w0: np.ndarray,
    grads: Sequence[np.ndarray],
    make_optimizer: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
) -> np.ndarray:
    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    optimizer = make_optimizer([p])
    for g in grads:
        p.grad = torch.from_numpy(g.copy())
        optimizer.step()
    return p.detach().numpy()


def ulps(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| in units of b's float spacing."""
    return float((np.abs(a - b) / np.spacing(np.abs(b))).max())


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_keras_adam_matches_numpy_reference(dtype: str, amsgrad: bool) -> None:
    w0, grads = toy_problem(dtype)
    expected = numpy_keras_adam(w0, grads, amsgrad=amsgrad)
    got = run_torch_optimizer(w0, grads, lambda ps: KerasAdam(ps, amsgrad=amsgrad))
    assert got.dtype == expected.dtype == np.dtype(dtype)
    assert np.abs(got - w0).max() > 1e-2, "the toy steps should move the weights"
    assert ulps(got, expected) == 0


@pytest.mark.parametrize("amsgrad", [False, True])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_keras_adam_matches_live_keras_adam(keras: ModuleType, dtype: str, amsgrad: bool) -> None:
    import tensorflow as tf

    import keras_ref

    w0, grads = toy_problem(dtype, seed=1)
    with keras_ref.dtype_scope(dtype):
        var = keras.Variable(w0, dtype=dtype)
        optimizer = keras.optimizers.Adam(amsgrad=amsgrad)
        for g in grads:
            optimizer.apply_gradients([(tf.constant(g), var)])
    assert int(optimizer.iterations) == TOY_STEPS
    expected = np.asarray(var)
    got = run_torch_optimizer(w0, grads, lambda ps: KerasAdam(ps, amsgrad=amsgrad))
    assert ulps(got, expected) == 0


def test_lr_dtype_matches_keras_float32_floatx(keras: ModuleType) -> None:
    """A float64 variable under Keras's default float32 floatx: the learning rate is float32(1e-3)."""
    import tensorflow as tf

    import keras_ref

    w0, grads = toy_problem("float64", seed=2)
    with keras_ref.dtype_scope("float32"):
        var = keras.Variable(w0, dtype="float64")
        optimizer = keras.optimizers.Adam()
        for g in grads:
            optimizer.apply_gradients([(tf.constant(g), var)])
    expected = np.asarray(var)
    got = run_torch_optimizer(w0, grads, lambda ps: KerasAdam(ps, lr_dtype=torch.float32))
    assert ulps(got, expected) == 0
    plain = run_torch_optimizer(w0, grads, KerasAdam)
    assert np.abs(plain - expected).max() > 1e-12  # lr 1e-3 vs 0.0010000000474974513


@pytest.mark.parametrize("amsgrad", [False, True])
def test_keras_adam_resumes_from_state_dict(amsgrad: bool) -> None:
    """Stopping after 8 steps and resuming from ``state_dict()`` changes nothing (step count too)."""
    w0, grads = toy_problem("float64", seed=3)
    straight = run_torch_optimizer(w0, grads, lambda ps: KerasAdam(ps, amsgrad=amsgrad))

    p = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    first = KerasAdam([p], amsgrad=amsgrad)
    for g in grads[:8]:
        p.grad = torch.from_numpy(g.copy())
        first.step()
    second = KerasAdam([p], amsgrad=amsgrad)
    second.load_state_dict(first.state_dict())
    assert second.iterations == 8
    for g in grads[8:]:
        p.grad = torch.from_numpy(g.copy())
        second.step()
    assert second.iterations == TOY_STEPS
    assert np.array_equal(p.detach().numpy(), straight)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_torch_adam_is_not_keras_adam(amsgrad: bool) -> None:
    """torch.optim.Adam(eps=1e-7) adds epsilon after the bias correction: small gradients part ways."""
    w0, grads = toy_problem("float64")
    keras_adam = numpy_keras_adam(w0, grads, amsgrad=amsgrad)
    betas = (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2)
    torch_adam = run_torch_optimizer(
        w0,
        grads,
        lambda ps: torch.optim.Adam(
            ps, KERAS_ADAM_LEARNING_RATE, betas, KERAS_ADAM_EPSILON, amsgrad=amsgrad
        ),
    )
    moved = np.abs(keras_adam - w0)
    miss = np.abs(torch_adam - keras_adam)
    print(f"torch.optim.Adam vs Keras (amsgrad={amsgrad}): max |Δ| {miss.max():.3g}")
    assert miss.max() > 0.1 * moved.max()


def test_float32_betas_matter() -> None:
    """The textbook float64 betas miss Keras's float64 update by far more than rounding."""
    w0, grads = toy_problem("float64")
    keras_adam = numpy_keras_adam(w0, grads, amsgrad=False)
    textbook = numpy_keras_adam(w0, grads, amsgrad=False, round_betas_to_float32=False)
    got = run_torch_optimizer(w0, grads, KerasAdam)
    assert ulps(got, keras_adam) == 0
    assert np.abs(textbook - keras_adam).max() > 1e-11


# ---------------------------------------------------------------------------------------------
# Initialisation: glorot_uniform kernels and zero biases, as Keras draws them

INIT_SEED = 31
STD_RTOL = 0.08  # ~4 standard errors for the smallest kernel (480 values)
KS_LIMIT = 2.0  # √n·D of a Kolmogorov–Smirnov test against U(-limit, limit); p ≈ 0.0007


def glorot_limit(kernel_shape: tuple[int, ...]) -> float:
    """Keras's glorot_uniform bound √(6 / (fan_in + fan_out)) for a Keras-layout kernel."""
    receptive = int(np.prod(kernel_shape[:-2])) if len(kernel_shape) > 2 else 1
    fan_in = kernel_shape[-2] * receptive
    fan_out = kernel_shape[-1] * receptive
    return float(np.sqrt(6.0 / (fan_in + fan_out)))


def init_problems(layers: Sequence[Sequence[np.ndarray]]) -> list[str]:
    """How Keras-layout ``[kernel, bias]`` lists fall short of glorot_uniform + zeros."""
    problems = []
    for i, arrays in enumerate(layers):
        if not arrays:
            continue
        kernel, bias = arrays
        limit = glorot_limit(kernel.shape)
        k = kernel.astype(np.float64).ravel()
        n = k.size
        if np.abs(k).max() > limit * (1 + 1e-6) or np.abs(k).max() < 0.95 * limit:
            problems.append(f"layer {i}: max |w| {np.abs(k).max():.4g}, bound {limit:.4g}")
        std = k.std()
        if abs(std / (limit / np.sqrt(3)) - 1) > STD_RTOL:
            problems.append(f"layer {i}: std {std:.4g}, expected {limit / np.sqrt(3):.4g}")
        if abs(k.mean()) > 4 * std / np.sqrt(n):
            problems.append(f"layer {i}: mean {k.mean():.3g} is not ~0")
        u = np.sort((k + limit) / (2 * limit))
        ks = max((np.arange(1, n + 1) / n - u).max(), (u - np.arange(n) / n).max())
        if np.sqrt(n) * ks > KS_LIMIT:
            problems.append(f"layer {i}: not uniform (KS √n·D = {np.sqrt(n) * ks:.2f})")
        if np.any(bias != 0):
            problems.append(f"layer {i}: bias is not zero (max |b| {np.abs(bias).max():.3g})")
    return problems


def keras_initial_weights(keras: ModuleType, name: str) -> list[list[np.ndarray]]:
    import keras_ref

    keras.utils.set_random_seed(INIT_SEED)
    model = keras_ref.build_model(name)
    return [
        [np.asarray(w) for w in layer.get_weights()]
        for layer in model.layers
        if type(layer).__name__ != "InputLayer"
    ]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_initialisation_matches_keras(keras: ModuleType, name: str) -> None:
    keras_layers = keras_initial_weights(keras, name)
    torch.manual_seed(INIT_SEED)
    torch_layers = torch_to_keras(torch_cnn.create_model(name))
    assert [[a.shape for a in layer] for layer in torch_layers] == [
        [a.shape for a in layer] for layer in keras_layers
    ]
    assert init_problems(keras_layers) == [], "the check itself should accept Keras's own init"
    assert init_problems(torch_layers) == []
    for t, k in zip(torch_layers, keras_layers, strict=True):
        if t:
            assert abs(t[0].std() / k[0].std() - 1) <= 2 * STD_RTOL


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_initialisation_check_catches_torch_defaults(name: str) -> None:
    """torch's own Conv2d/Linear init (kaiming_uniform(a=√5), uniform biases) must be refused."""
    torch.manual_seed(INIT_SEED)
    model = torch_cnn.create_model(name)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d | torch.nn.Linear):
            module.reset_parameters()
    problems = init_problems(torch_to_keras(model))
    assert any("std" in p for p in problems)
    assert any("bias" in p for p in problems)
