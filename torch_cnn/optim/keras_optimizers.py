"""Keras 3's Adam, AdamW, SGD and RMSprop as torch optimizers, step for step and dtype for dtype.

Each ``update_step`` is transcribed from ``keras/src/optimizers/{adam,adamw,sgd,rmsprop}.py``;
the step around it (clipping, weight decay, ``iterations``) is ``base.KerasOptimizer``.
Adam's β powers, SGD's momentum and the weight decay go through float32 even for
float64 variables (``tf.cast`` of a Python float); Adam's ``1 - β``, RMSprop's ``ρ``,
``1 - ρ`` and momentum, and every epsilon are rounded straight to the variable's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import ParamsT

from torch_cnn.optim.base import KerasOptimizer, Scalars, SlotLayout, T, _lr, maximum_, sqrt
from torch_cnn.optim.ieee import NUMPY_DTYPES, as_dtype, ieee_sqrt, tf_cast

# keras.optimizers.Adam's defaults (AdamW's too, with KERAS_ADAMW_WEIGHT_DECAY).
KERAS_ADAM_LEARNING_RATE = 1e-3
KERAS_ADAM_BETA_1 = 0.9
KERAS_ADAM_BETA_2 = 0.999
KERAS_ADAM_EPSILON = 1e-7
KERAS_ADAMW_WEIGHT_DECAY = 0.004
# keras.optimizers.SGD's defaults.
KERAS_SGD_LEARNING_RATE = 0.01
KERAS_SGD_MOMENTUM = 0.0
# keras.optimizers.RMSprop's defaults.
KERAS_RMSPROP_LEARNING_RATE = 1e-3
KERAS_RMSPROP_RHO = 0.9
KERAS_RMSPROP_MOMENTUM = 0.0
KERAS_RMSPROP_EPSILON = 1e-7


class KerasAdam(KerasOptimizer):
    """Adam exactly as ``keras.optimizers.Adam`` (``keras/src/optimizers/adam.py``) updates a variable.

    For each parameter ``p`` with gradient ``g``, at step ``t = iterations + 1``
    and with every scalar a tensor of ``p``'s dtype unless said otherwise::

        b1, b2 = float32(beta_1), float32(beta_2)   # then cast to p.dtype
        alpha  = lr * sqrt(1 - b2**t) / (1 - b1**t)
        m     += (g - m) * (1 - beta_1)             # Python float β, not rounded to float32
        v     += (g*g - v) * (1 - beta_2)
        v_hat  = max(v_hat, v)                      # amsgrad only; v_hat replaces v below
        p     -= (m * alpha) / (sqrt(v) + eps)

    What differs from ``torch.optim.Adam(lr, betas, eps)``:

    - **epsilon**: torch divides by ``sqrt(v) / sqrt(1 - β₂ᵗ) + eps``; Keras by
      ``(sqrt(v) + eps) / sqrt(1 - β₂ᵗ)``, i.e. torch's form with
      ``eps / sqrt(1 - β₂ᵗ)``: about 32·eps at ``t = 1``, falling to eps as
      ``t`` grows. Keras's default eps is 1e-7, torch's 1e-8.
    - **betas in the bias corrections** are float32 values even for float64
      parameters (``tf.cast`` of a Python float goes through float32):
      ``1 - β₁ᵗ`` is off by about 2.4e-7 relative at ``t = 1``. The moment
      updates use the Python floats unrounded.
    - **update form**: ``m += (g - m)(1 - β₁)`` rather than ``m = β₁m + (1 - β₁)g``,
      and the bias corrections are folded into one step size ``alpha``; the
      results agree mathematically but not bit for bit.
    - **step count**: ``t`` counts calls to ``step()`` (Keras's
      ``optimizer.iterations``): a parameter whose gradient was ``None`` for a
      while still sees the global ``t``, as in Keras.
    - **weight decay** (off by default) is Keras's decoupled one, see ``KerasOptimizer``.

    >>> import torch
    >>> w = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    >>> opt = KerasAdam([w])  # Keras defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-7
    >>> w.grad = torch.tensor([0.5, -0.25], dtype=torch.float64)
    >>> opt.step()
    >>> w.detach()
    tensor([ 0.9990, -1.9990], dtype=torch.float64)
    >>> opt.iterations
    1
    """

    keras_class_name = "Adam"

    def __init__(
        self,
        params: ParamsT,
        lr: float = KERAS_ADAM_LEARNING_RATE,
        betas: tuple[float, float] = (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
        eps: float = KERAS_ADAM_EPSILON,
        amsgrad: bool = False,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        lr_dtype: torch.dtype | None = None,
        foreach: bool | None = None,
    ) -> None:
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0. Received: eps={eps}")
        beta_1, beta_2 = betas
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1). Received: betas={betas}")
        super().__init__(
            params,
            {"lr": lr, "betas": (beta_1, beta_2), "eps": eps, "amsgrad": bool(amsgrad)},
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            lr_dtype=lr_dtype,
            foreach=foreach,
        )

    def keras_slots(self, group: dict[str, Any]) -> SlotLayout:
        """``momentum`` and ``velocity`` interleaved per variable, then ``velocity_hat`` (amsgrad)."""
        return (("m", "v"), ("v_hat",)) if group["amsgrad"] else (("m", "v"),)

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        beta_1, beta_2 = group["betas"]
        return {
            "1-b1": as_dtype(1 - beta_1, dtype),
            "1-b2": as_dtype(1 - beta_2, dtype),
            "eps": as_dtype(group["eps"], dtype),
            "alpha": _adam_step_size(group, dtype, local_step),
        }

    def _update(self, group: dict[str, Any], c: Scalars, p: T, g: T, slots: dict[str, T]) -> None:
        m, v = slots["m"], slots["v"]
        m.add_(g.sub(m).mul_(c["1-b1"]))  # m += (g - m) * (1 - beta_1)
        v.add_(g.mul(g).sub_(v).mul_(c["1-b2"]))  # v += (g² - v) * (1 - beta_2)
        if group["amsgrad"]:
            maximum_(slots["v_hat"], v)
            v = slots["v_hat"]
        # p -= (m * alpha) / (sqrt(v) + eps)
        p.addcdiv_(m.mul(c["alpha"]), sqrt(v).add_(c["eps"]), value=-1)


class KerasAdamW(KerasAdam):
    """``keras.optimizers.AdamW`` (``keras/src/optimizers/adamw.py``): ``KerasAdam`` with weight decay on.

    Keras's AdamW is its Adam with ``weight_decay=0.004`` by default; the decay is the
    base optimizer's, ``w -= w * wd * lr`` before the Adam update, ``wd`` rounded to
    float32 first. Unlike ``torch.optim.AdamW`` (``w *= 1 - lr·wd``, also before the
    update) the two products are rounded separately, and the default is 0.004, not 0.01.

    >>> w = torch.nn.Parameter(torch.ones(2))
    >>> w.grad = torch.zeros(2)
    >>> KerasAdamW([w], lr=0.5).step()  # a zero gradient: only the decay moves w
    >>> w.detach()
    tensor([0.9980, 0.9980])
    """

    keras_class_name = "AdamW"

    def __init__(
        self,
        params: ParamsT,
        lr: float = KERAS_ADAM_LEARNING_RATE,
        betas: tuple[float, float] = (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
        eps: float = KERAS_ADAM_EPSILON,
        weight_decay: float = KERAS_ADAMW_WEIGHT_DECAY,
        amsgrad: bool = False,
        *,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        lr_dtype: torch.dtype | None = None,
        foreach: bool | None = None,
    ) -> None:
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(
            params,
            lr,
            betas,
            eps,
            amsgrad,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            lr_dtype=lr_dtype,
            foreach=foreach,
        )


class KerasSGD(KerasOptimizer):
    """SGD exactly as ``keras.optimizers.SGD`` (``keras/src/optimizers/sgd.py``) updates a variable::

        mu = float32(momentum)                   # tf.cast, then p.dtype
        if momentum == 0:  p -= g * lr
        else:              m = m * mu - g * lr
                           p += m * mu - g * lr   if nesterov else   p += m

    ``torch.optim.SGD`` keeps ``b = μb + g`` and steps ``-lr·b``: the velocity holds
    gradients, not steps, so a changed learning rate acts at once rather than through
    the velocity, and every product is rounded elsewhere.

    >>> w = torch.nn.Parameter(torch.tensor([1.0]))
    >>> opt = KerasSGD([w], lr=0.1, momentum=0.9)
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([1.0])
    ...     opt.step()
    >>> w.detach()  # 1 - 0.1 - (0.09 + 0.1)
    tensor([0.7100])
    """

    keras_class_name = "SGD"

    def __init__(
        self,
        params: ParamsT,
        lr: float = KERAS_SGD_LEARNING_RATE,
        momentum: float = KERAS_SGD_MOMENTUM,
        nesterov: bool = False,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        lr_dtype: torch.dtype | None = None,
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"`momentum` must be a float between [0, 1]. Received: momentum={momentum}"
            )
        super().__init__(
            params,
            {"lr": lr, "momentum": float(momentum), "nesterov": bool(nesterov)},
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            lr_dtype=lr_dtype,
            foreach=foreach,
        )

    def keras_slots(self, group: dict[str, Any]) -> SlotLayout:
        """``momentum`` per variable, only when momentum is not 0."""
        return (("momentum",),) if group["momentum"] != 0 else ()

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        return {"lr": _lr(group, dtype), "momentum": tf_cast(group["momentum"], dtype)}

    def _update(self, group: dict[str, Any], c: Scalars, p: T, g: T, slots: dict[str, T]) -> None:
        step = g.mul(c["lr"])  # g * lr
        if group["momentum"] == 0:
            p.sub_(step)
            return
        m = slots["momentum"]
        m.mul_(c["momentum"]).sub_(step)  # m = m * momentum - g * lr
        if group["nesterov"]:
            p.add_(m.mul(c["momentum"]).sub_(step))  # p += m * momentum - g * lr
        else:
            p.add_(m)


class KerasRMSprop(KerasOptimizer):
    """RMSprop exactly as ``keras.optimizers.RMSprop`` (``keras/src/optimizers/rmsprop.py``)::

        v   = rho * v + (1 - rho) * g²             # rho, 1 - rho: Python floats, straight to p.dtype
        a   = rho * a + (1 - rho) * g              # centered only
        den = v - a² + eps   if centered   else   v + eps
        inc = (lr * g) / sqrt(den)
        if momentum > 0:  mom = momentum * mom + inc;  p -= mom
        else:             p -= inc

    ``torch.optim.RMSprop`` (``alpha`` for ρ) adds eps *after* the square root and
    defaults to eps 1e-8 and ρ 0.99; Keras's defaults are 1e-7 and 0.9.

    >>> w = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    >>> w.grad = torch.tensor([2.0], dtype=torch.float64)
    >>> KerasRMSprop([w], lr=0.1).step()  # 1 - 0.1·2 / sqrt(0.1·4 + 1e-7)
    >>> w.detach()
    tensor([0.6838], dtype=torch.float64)
    """

    keras_class_name = "RMSprop"

    def __init__(
        self,
        params: ParamsT,
        lr: float = KERAS_RMSPROP_LEARNING_RATE,
        rho: float = KERAS_RMSPROP_RHO,
        eps: float = KERAS_RMSPROP_EPSILON,
        momentum: float = KERAS_RMSPROP_MOMENTUM,
        centered: bool = False,
        *,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        lr_dtype: torch.dtype | None = None,
        foreach: bool | None = None,
    ) -> None:
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rho must lie in [0, 1]. Received: rho={rho}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0. Received: eps={eps}")
        if not momentum >= 0.0:
            raise ValueError(f"momentum must be >= 0. Received: momentum={momentum}")
        super().__init__(
            params,
            {
                "lr": lr,
                "rho": float(rho),
                "eps": float(eps),
                "momentum": float(momentum),
                "centered": bool(centered),
            },
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            lr_dtype=lr_dtype,
            foreach=foreach,
        )

    def keras_slots(self, group: dict[str, Any]) -> SlotLayout:
        """``velocity``, then ``momentum`` (momentum > 0), then ``average_gradient`` (centered)."""
        layout: SlotLayout = (("velocity",),)
        if group["momentum"] > 0:
            layout += (("momentum",),)
        if group["centered"]:
            layout += (("average_gradient",),)
        return layout

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        return {
            "rho": as_dtype(group["rho"], dtype),
            "1-rho": as_dtype(1 - group["rho"], dtype),
            "eps": as_dtype(group["eps"], dtype),
            "lr": _lr(group, dtype),
            "momentum": as_dtype(group["momentum"], dtype),
        }

    def _update(self, group: dict[str, Any], c: Scalars, p: T, g: T, slots: dict[str, T]) -> None:
        v = slots["velocity"]
        v.mul_(c["rho"]).add_(g.mul(g).mul_(c["1-rho"]))  # v = rho * v + (1 - rho) * g²
        if group["centered"]:
            a = slots["average_gradient"]
            a.mul_(c["rho"]).add_(g.mul(c["1-rho"]))  # a = rho * a + (1 - rho) * g
            denominator = v.sub(a.mul(a)).add_(c["eps"])  # v - a² + eps
        else:
            denominator = v.add(c["eps"])
        # increment = (lr * g) / sqrt(denominator)
        if group["momentum"] > 0:
            mom = slots["momentum"]
            mom.mul_(c["momentum"]).addcdiv_(g.mul(c["lr"]), sqrt(denominator), value=1)
            p.sub_(mom)
        else:
            p.addcdiv_(g.mul(c["lr"]), sqrt(denominator), value=-1)


def _adam_step_size(group: dict[str, Any], dtype: torch.dtype, local_step: int) -> float:
    """Keras's ``alpha = lr * sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ)``, computed in ``dtype``.

    Returned as a Python float that ``dtype`` holds exactly, so multiplying a
    tensor of ``dtype`` by it (on any device) uses the very value Keras uses.
    For float32 and float64 the scalars are NumPy's, whose ``**`` and ``sqrt``
    are the C library's ``pow``/``sqrt``, as in TensorFlow's scalar kernels
    (torch's CPU ``pow`` and ``sqrt`` differ from them by an ulp at some steps).
    """
    beta_1, beta_2 = group["betas"]
    lr = _lr(group, dtype)
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        t = torch.tensor(float(local_step), dtype=dtype)
        beta_1_power = torch.tensor(tf_cast(beta_1, dtype), dtype=dtype).pow(t)
        beta_2_power = torch.tensor(tf_cast(beta_2, dtype), dtype=dtype).pow(t)
        alpha = lr * ieee_sqrt(1 - beta_2_power) / (1 - beta_1_power)
        return float(alpha.item())
    one = np_dtype(1)
    t_np = np_dtype(local_step)
    b1_power = np_dtype(tf_cast(beta_1, dtype)) ** t_np
    b2_power = np_dtype(tf_cast(beta_2, dtype)) ** t_np
    return float(np_dtype(lr) * np.sqrt(one - b2_power) / (one - b1_power))
