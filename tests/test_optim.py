"""torch_cnn.optim without Keras: exact square roots, the optimizers' bookkeeping, the factory,
Keras configs and optimizer variables. (Against live Keras: parity_tests/test_keras_optimizers.py.)"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from torch_cnn.optim import (
    KERAS_ADAM_EPSILON,
    KerasAdam,
    KerasAdamW,
    KerasOptimizer,
    KerasRMSprop,
    KerasSGD,
    create_optimizer,
    device_ieee_sqrt,
    ieee_sqrt,
    keras_optimizer_state,
    list_optimizers,
    load_keras_optimizer_state,
    optimizer_from_keras_config,
    weight_decay_param_groups,
)
from torch_cnn.optim.ieee import _tuckerman

NP = {torch.float32: np.float32, torch.float64: np.float64}
SQRTS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ieee_sqrt": ieee_sqrt,
    "device_ieee_sqrt": device_ieee_sqrt,
    "tuckerman": _tuckerman,  # device_ieee_sqrt's float64 route; its float32 one where float64 is missing
}


# ---------------------------------------------------------------------------------------------
# Correctly rounded square roots


def _correctly_rounded(x: float, root: np.floating[Any]) -> bool:
    """Whether ``root`` is sqrt(x) rounded to nearest in root's dtype, in exact arithmetic:
    x lies between the squares of the midpoints from root to its two neighbours."""
    below = np.nextafter(root, root.dtype.type(-np.inf))
    above = np.nextafter(root, root.dtype.type(np.inf))
    r = Fraction(float(root))
    lo, hi = (r + Fraction(float(below))) / 2, (r + Fraction(float(above))) / 2
    return lo * lo <= Fraction(x) <= hi * hi


def _hard_inputs(dtype: torch.dtype, n: int, seed: int) -> torch.Tensor:
    """Positive finite inputs over the whole range: every decade, subnormals, exact squares
    and their neighbours, powers of two with odd and even exponents, the extremes."""
    g = torch.Generator().manual_seed(seed)
    info = torch.finfo(dtype)
    lo, hi = int(np.log2(info.smallest_normal)) - info.bits // 2, int(np.log2(info.max))
    exps = torch.randint(lo, hi, (n,), generator=g).to(torch.float64)
    mant = 1 + torch.rand(n, generator=g, dtype=torch.float64)
    spread = (mant * 2.0**exps).to(dtype)
    k = torch.randint(1, 2 ** (info.bits // 4 + 4), (n // 4,), generator=g).to(torch.float64)
    squares = (k * k * 4.0 ** torch.randint(-30, 30, (n // 4,), generator=g)).to(dtype)
    subnormal = (torch.rand(n // 8, generator=g, dtype=torch.float64) * info.smallest_normal).to(
        dtype
    )
    special = torch.tensor(
        [
            info.max,
            info.smallest_normal,
            info.tiny * info.eps,  # the smallest subnormal
            1.0,
            2.0,
            4.0,
            0.25,
            0.5,
            3.0,
            2.0**101,
            2.0**-101,
        ],
        dtype=dtype,
    )
    x = torch.cat([spread, squares, subnormal, special])
    inf = torch.full_like(squares, float("inf"))
    x = torch.cat([x, torch.nextafter(squares, inf), torch.nextafter(squares, -inf)])
    return x[(x > 0) & (x < float("inf"))]


@pytest.mark.parametrize("impl", list(SQRTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sqrt_is_correctly_rounded(impl: str, dtype: torch.dtype) -> None:
    """Checked in exact rational arithmetic, independently of any library's sqrt."""
    x = _hard_inputs(dtype, 3000, seed=0)
    got = SQRTS[impl](x)
    assert got.dtype == dtype
    wrong = [
        (float(v), float(r))
        for v, r in zip(x.numpy(), got.numpy(), strict=True)
        if not _correctly_rounded(float(v), r)
    ]
    assert wrong == [], wrong[:5]
    # And torch's own CPU sqrt, for the record of why these exist: often an ulp off.
    plain = x.sqrt().numpy()
    off = sum(not _correctly_rounded(float(v), r) for v, r in zip(x.numpy(), plain, strict=True))
    print(f"{dtype}: torch.sqrt not correctly rounded for {off} of {len(x)} inputs")


@pytest.mark.parametrize(
    ("impl", "dtype"),
    [
        ("device_ieee_sqrt", torch.float32),  # through float64
        ("device_ieee_sqrt", torch.float64),  # Tuckerman's test
        ("tuckerman", torch.float32),  # the route where float64 is missing
    ],
)
def test_device_sqrt_equals_numpy_on_a_million_inputs(impl: str, dtype: torch.dtype) -> None:
    """NumPy's root (the C library's, exact: checked above) on 10⁶ inputs over the whole range."""
    x = _hard_inputs(dtype, 800_000, seed=1)
    expected = np.sqrt(x.numpy())
    got = SQRTS[impl](x).numpy()
    assert len(x) > 1_000_000
    assert int((got != expected).sum()) == 0
    torch_off = int((x.sqrt().numpy() != expected).sum())
    print(f"{dtype}: torch.sqrt off for {torch_off} of {len(x)}; {impl} for 0")
    if dtype == torch.float32:  # the float64 route is exact although torch's float64 root is not
        x64 = x.double()
        assert int((x64.sqrt().numpy() != np.sqrt(x64.numpy())).sum()) > 0


@pytest.mark.parametrize("impl", list(SQRTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sqrt_special_values(impl: str, dtype: torch.dtype) -> None:
    x = torch.tensor([0.0, -0.0, float("inf"), float("nan"), -1.0, -float("inf")], dtype=dtype)
    with np.errstate(invalid="ignore"):
        expected = np.sqrt(x.numpy())
    got = SQRTS[impl](x).numpy()
    np.testing.assert_array_equal(got, expected)  # NaN where NumPy has NaN
    assert np.signbit(got[1]) and not np.signbit(got[0])


def test_ieee_sqrt_keeps_layout_and_low_precision_dtypes() -> None:
    x = torch.rand(4, 3, 5, 5).to(memory_format=torch.channels_last)
    got = ieee_sqrt(x)
    assert got.stride() == x.stride()
    np.testing.assert_array_equal(got.numpy(), np.sqrt(x.numpy()))
    assert ieee_sqrt(torch.tensor(2.0)).shape == ()  # 0-d in, 0-d out
    for sqrt in (ieee_sqrt, device_ieee_sqrt):
        half = sqrt(torch.tensor([4.0, 2.0, 0.25], dtype=torch.bfloat16))
        assert half.dtype == torch.bfloat16
        assert half.tolist() == [2.0, torch.tensor(2.0**0.5, dtype=torch.bfloat16).item(), 0.5]
    with pytest.raises(TypeError, match=r"Received: dtype=torch\.int64"):
        device_ieee_sqrt(torch.tensor([4]))


# ---------------------------------------------------------------------------------------------
# The optimizers' bookkeeping (their arithmetic is held to live Keras in parity_tests/)

VARIANTS: dict[str, Callable[..., KerasOptimizer]] = {
    "adam": lambda ps, **kw: KerasAdam(ps, **kw),
    "adam_amsgrad_wd": lambda ps, **kw: KerasAdam(ps, amsgrad=True, weight_decay=0.01, **kw),
    "adamw": lambda ps, **kw: KerasAdamW(ps, lr=0.01, **kw),
    "sgd": lambda ps, **kw: KerasSGD(ps, **kw),
    "sgd_nesterov": lambda ps, **kw: KerasSGD(ps, momentum=0.9, nesterov=True, **kw),
    "rmsprop_centered": lambda ps, **kw: KerasRMSprop(ps, momentum=0.5, centered=True, **kw),
    "rmsprop_clipnorm": lambda ps, **kw: KerasRMSprop(ps, clipnorm=0.5, **kw),
    "sgd_global_clipnorm": lambda ps, **kw: KerasSGD(ps, momentum=0.5, global_clipnorm=1.0, **kw),
    "adam_clipvalue": lambda ps, **kw: KerasAdam(ps, clipvalue=0.1, **kw),
}
SHAPES = [(4, 3, 3, 3), (4,), (12, 5), (5,)]
STEPS = 12


def _problem(
    dtype: torch.dtype, seed: int = 0
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    w0 = [torch.randn(s, generator=g, dtype=dtype) for s in SHAPES]
    grads = [
        [torch.randn(s, generator=g, dtype=dtype) * 10.0 ** (i % 5 - 3) for s in SHAPES]
        for i in range(STEPS)
    ]
    return w0, grads


def _run(
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    w0: list[torch.Tensor],
    grads: list[list[torch.Tensor]],
    channels_last: bool = False,
) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = [torch.nn.Parameter(w.clone()) for w in w0]
    if channels_last:
        params[0] = torch.nn.Parameter(w0[0].clone().to(memory_format=torch.channels_last))
    opt = make(params)
    for step in grads:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        opt.step()
    return params, opt


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_foreach_and_per_tensor_paths_agree_bit_for_bit(variant: str, dtype: torch.dtype) -> None:
    w0, grads = _problem(dtype)
    one, _ = _run(lambda ps: VARIANTS[variant](ps, foreach=False), w0, grads)
    many, _ = _run(lambda ps: VARIANTS[variant](ps, foreach=True), w0, grads, channels_last=True)
    assert max(float((p.detach() - w).abs().max()) for p, w in zip(one, w0, strict=True)) > 1e-4
    for a, b in zip(one, many, strict=True):
        assert torch.equal(a, b)
    assert many[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resumes_from_state_dict(variant: str) -> None:
    """Stopping after 5 steps and resuming from ``state_dict()`` changes nothing."""
    w0, grads = _problem(torch.float64, seed=1)
    straight, _ = _run(VARIANTS[variant], w0, grads)
    params, first = _run(VARIANTS[variant], w0, grads[:5])
    second = VARIANTS[variant](params)
    second.load_state_dict(first.state_dict())
    assert isinstance(second, KerasOptimizer) and second.iterations == 5
    for step in grads[5:]:
        for p, g in zip(params, step, strict=True):
            p.grad = g.clone()
        second.step()
    assert second.iterations == STEPS
    for a, b in zip(params, straight, strict=True):
        assert torch.equal(a, b)


def test_state_dict_from_before_the_new_options_loads() -> None:
    """A KerasAdam checkpoint written before weight_decay/clipping/foreach existed."""
    w0, grads = _problem(torch.float64)
    params, first = _run(KerasAdam, w0, grads[:3])
    saved = first.state_dict()
    for group in saved["param_groups"]:
        for key in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "foreach"):
            del group[key]
    second = KerasAdam(params)
    second.load_state_dict(saved)
    params[0].grad = grads[3][0].clone()
    second.step()
    assert second.param_groups[0]["weight_decay"] is None and second.iterations == 4


def test_iterations_advance_for_parameters_without_gradients() -> None:
    """Keras's ``iterations`` is global: a parameter first updated at step 3 uses t = 3."""
    w0, grads = _problem(torch.float64)
    a, b = torch.nn.Parameter(w0[0].clone()), torch.nn.Parameter(w0[1].clone())
    opt = KerasAdam([a, b])
    for step in range(2):
        a.grad, b.grad = grads[step][0].clone(), None
        opt.step()
    assert torch.equal(b.detach(), w0[1])  # untouched while its gradient was None
    a.grad, b.grad = grads[2][0].clone(), grads[2][1].clone()
    opt.step()
    lone = torch.nn.Parameter(w0[1].clone())
    fresh = KerasAdam([lone])
    fresh.param_groups[0]["step"] = 2
    lone.grad = grads[2][1].clone()
    fresh.step()
    assert torch.equal(b.detach(), lone.detach())
    assert opt.iterations == 3
    a.grad = b.grad = None
    opt.step()  # no gradient at all: Keras refuses such a step; here it is none
    assert opt.iterations == 3
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2, dtype=torch.float64))]})
    assert opt.param_groups[1]["step"] == 3


def test_weight_decay_groups_leave_excluded_parameters_alone() -> None:
    layer = torch.nn.Linear(3, 2)
    before = {n: p.detach().clone() for n, p in layer.named_parameters()}
    opt = KerasAdamW(weight_decay_param_groups(layer.named_parameters(), ["bias"]), lr=0.5)
    for p in layer.parameters():
        p.grad = torch.zeros_like(p)  # only the decay can move anything
    opt.step()
    assert torch.equal(layer.bias.detach(), before["bias"])
    wd = float(np.float32(0.004))  # through float32, as tf.cast
    expected = before["weight"] - before["weight"] * np.float32(wd) * np.float32(0.5)
    assert torch.equal(layer.weight.detach(), expected)


def test_options_are_checked() -> None:
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match=r"Only one of .*Received: clipnorm=1.0, clipvalue=0.5"):
        KerasSGD(w, clipnorm=1.0, clipvalue=0.5)
    with pytest.raises(ValueError, match=r"schedules are not supported.*Received: lr="):
        KerasAdam(w, lr=lambda: 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight_decay=None"):
        KerasAdamW(w, weight_decay=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"momentum=1.5"):
        KerasSGD(w, momentum=1.5)
    with pytest.raises(ValueError, match=r"rho=1.5"):
        KerasRMSprop(w, rho=1.5)
    opt = KerasSGD(w, clipnorm=1.0)
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))], "clipnorm": 2.0})
    for group in opt.param_groups:
        group["params"][0].grad = torch.ones(2)
    with pytest.raises(ValueError, match="must be the same in every param group"):
        opt.step()
    w[0].grad = torch.ones(2).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        KerasAdam(w).step()


# ---------------------------------------------------------------------------------------------
# create_optimizer


def test_create_optimizer_builds_every_name() -> None:
    assert list_optimizers() == [
        "keras_adam",
        "keras_adamw",
        "keras_rmsprop",
        "keras_sgd",
        "torch_adam",
        "torch_adam_foreach",
        "torch_adam_fused",
    ]
    w = [torch.nn.Parameter(torch.zeros(2))]
    types = {name: type(create_optimizer(name, w)) for name in list_optimizers()}
    assert types["keras_adam"] is KerasAdam and types["keras_adamw"] is KerasAdamW
    assert types["keras_sgd"] is KerasSGD and types["keras_rmsprop"] is KerasRMSprop
    for name in ("torch_adam", "torch_adam_fused", "torch_adam_foreach"):
        opt = create_optimizer(name, w, lr=2e-3, capturable=False)
        assert type(opt) is torch.optim.Adam
        group = opt.param_groups[0]
        assert group["eps"] == KERAS_ADAM_EPSILON and group["betas"] == (0.9, 0.999)
        assert group["lr"] == 2e-3
        assert group["fused"] is (True if name.endswith("fused") else None)
        assert group["foreach"] is (True if name.endswith("foreach") else None)
    sgd = create_optimizer("keras_sgd", w, lr=0.1, momentum=0.9, nesterov=True)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["nesterov"] is True


def test_create_optimizer_refuses_unknown_names_and_hyperparameters() -> None:
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(
        ValueError, match=r"unknown optimizer 'adam'. Known optimizers: keras_adam,"
    ):
        create_optimizer("adam", w)
    with pytest.raises(
        ValueError, match=r"'keras_adam' takes no hyperparameter\(s\) \['capturable'\]"
    ):
        create_optimizer("keras_adam", w, capturable=True)
    with pytest.raises(ValueError, match=r"Valid: lr, betas, eps, amsgrad, capturable"):
        create_optimizer("torch_adam_fused", w, momentum=0.9)


# ---------------------------------------------------------------------------------------------
# Keras configs and optimizer variables


def _keras_config(class_name: str, **options: Any) -> dict[str, Any]:
    base = {
        "name": class_name.lower(),
        "learning_rate": 0.0010000000474974513,  # float() of a float32 variable
        "weight_decay": None,
        "clipnorm": None,
        "global_clipnorm": None,
        "clipvalue": None,
        "use_ema": False,
        "ema_momentum": 0.99,
        "ema_overwrite_frequency": None,
        "loss_scale_factor": None,
        "gradient_accumulation_steps": None,
    }
    return {"module": "keras.optimizers", "class_name": class_name, "config": {**base, **options}}


def test_optimizer_from_keras_config_maps_every_option() -> None:
    w = [torch.nn.Parameter(torch.zeros(2))]
    adam = optimizer_from_keras_config(
        _keras_config("Adam", beta_1=0.8, beta_2=0.99, epsilon=1e-6, amsgrad=True, clipnorm=1.0), w
    )
    group = adam.param_groups[0]
    assert type(adam) is KerasAdam
    assert (group["lr"], group["betas"], group["eps"]) == (0.0010000000474974513, (0.8, 0.99), 1e-6)
    assert group["amsgrad"] is True and group["clipnorm"] == 1.0
    adamw = optimizer_from_keras_config(_keras_config("AdamW", weight_decay=0.004), w)
    assert type(adamw) is KerasAdamW and adamw.param_groups[0]["weight_decay"] == 0.004
    sgd = optimizer_from_keras_config(_keras_config("SGD", momentum=0.9, nesterov=True), w)
    assert (sgd.param_groups[0]["momentum"], sgd.param_groups[0]["nesterov"]) == (0.9, True)
    rms = optimizer_from_keras_config(
        _keras_config("RMSprop", rho=0.8, momentum=0.1, epsilon=1e-6, centered=True), w
    )
    group = rms.param_groups[0]
    assert (group["rho"], group["momentum"], group["eps"], group["centered"]) == (
        0.8,
        0.1,
        1e-6,
        True,
    )
    assert type(optimizer_from_keras_config("rmsprop", w)) is KerasRMSprop


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            _keras_config("Nadam"),
            r"keras.optimizers.Nadam is not supported. Supported: .*Adam, AdamW, SGD, RMSprop",
        ),
        ("adagrad", "'adagrad' is not supported"),
        (
            _keras_config("Adam", learning_rate={"class_name": "ExponentialDecay", "config": {}}),
            "learning_rate is a ExponentialDecay schedule; learning-rate schedules are not supported",
        ),
        (_keras_config("SGD", use_ema=True), "use_ema=True is not supported"),
        (_keras_config("SGD", loss_scale_factor=128.0), "loss_scale_factor is not supported"),
        (_keras_config("SGD", gradient_accumulation_steps=4), "gradient_accumulation_steps"),
        (_keras_config("SGD", amsgrad=True), r"option\(s\) \['amsgrad'\] are not supported"),
        (_keras_config("RMSprop", beta_1=0.9), r"option\(s\) \['beta_1'\] are not supported"),
        (_keras_config("AdamW", weight_decay=None), "weight_decay=None"),
    ],
)
def test_optimizer_from_keras_config_refuses_what_it_cannot_do(config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optimizer_from_keras_config(config, [torch.nn.Parameter(torch.zeros(2))])


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T


@pytest.mark.parametrize("variant", ["adam_amsgrad_wd", "sgd_nesterov", "rmsprop_centered"])
def test_keras_optimizer_state_round_trips(variant: str) -> None:
    w0, grads = _problem(torch.float64)
    params, opt = _run(VARIANTS[variant], w0, grads[:4])
    # Keras's order need not be torch's: here the (12, 5) weight comes first, transposed.
    order = [params[2], params[3], params[0], params[1]]
    to_keras = [_transpose, np.asarray, np.asarray, np.asarray]
    saved = keras_optimizer_state(opt, order, to_keras)
    assert int(saved[0]) == 4 and saved[0].dtype == np.int64 and saved[1].dtype == np.float64
    assert saved[2].shape == (5, 12)
    fresh = VARIANTS[variant](params)
    load_keras_optimizer_state(fresh, saved, order, [_transpose, *to_keras[1:]])
    assert fresh.iterations == 4
    for p in params:
        assert fresh.state[p].keys() == opt.state[p].keys()
        for key, value in opt.state[p].items():
            assert torch.equal(fresh.state[p][key], value)


def test_load_keras_optimizer_state_checks_before_changing_anything() -> None:
    w0, grads = _problem(torch.float64)
    params, opt = _run(lambda ps: KerasAdam(ps, amsgrad=True), w0, grads[:2])
    same = [np.asarray] * 4
    saved = keras_optimizer_state(opt, params, same)
    assert len(saved) == 2 + 3 * 4  # iterations, lr, (m, v) × 4 interleaved, v_hat × 4

    def unchanged() -> bool:
        return opt.iterations == 2 and all(
            torch.equal(opt.state[p]["m"], torch.from_numpy(saved[2 + 2 * i]))
            for i, p in enumerate(params)
        )

    with pytest.raises(
        ValueError,
        match=r"13 Keras optimizer variables received; a Keras Adam over 4 variables has 14",
    ):
        load_keras_optimizer_state(opt, saved[:-1], params, same)
    wrong_shape = [*saved[:-1], np.zeros((2, 2))]
    with pytest.raises(
        ValueError, match=r"variable 13 \(v_hat of Keras variable 3\) has shape \(2, 2\)"
    ):
        load_keras_optimizer_state(opt, [np.asarray(9), *wrong_shape[1:]], params, same)
    with pytest.raises(ValueError, match="exactly once"):
        load_keras_optimizer_state(opt, saved, [params[0], *params[:3]], same)
    with pytest.raises(ValueError, match="iterations"):
        load_keras_optimizer_state(opt, [np.asarray(1.5), *saved[1:]], params, same)
    with pytest.raises(ValueError, match=r"Received: torch\.optim\.sgd\.SGD"):
        load_keras_optimizer_state(torch.optim.SGD(params), saved, params, same)
    assert unchanged()


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU): the device routes and the foreach path give the CPU's bits


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_square_roots_equal_numpy(cuda_device: str, dtype: torch.dtype) -> None:
    x = _hard_inputs(dtype, 200_000, seed=2)
    expected = np.sqrt(x.numpy())
    for impl in ("ieee_sqrt", "device_ieee_sqrt", "tuckerman"):
        got = SQRTS[impl](x.to(cuda_device)).cpu().numpy()
        assert int((got != expected).sum()) == 0, impl


@pytest.mark.cuda
@pytest.mark.parametrize("variant", [v for v in VARIANTS if "clipnorm" not in v])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_steps_equal_cpu_steps(cuda_device: str, variant: str, dtype: torch.dtype) -> None:
    """Multi-tensor kernels on the GPU, one tensor at a time on the CPU: the same bits
    (not with clipnorm/global_clipnorm, whose norms are sums in each device's order)."""
    w0, grads = _problem(dtype)
    cpu, _ = _run(VARIANTS[variant], w0, grads)
    moved = [[g.to(cuda_device) for g in step] for step in grads]
    gpu, _ = _run(VARIANTS[variant], [w.to(cuda_device) for w in w0], moved)
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.equal(a.detach(), b.detach().cpu())
