"""Keras 3's Adam as a torch optimizer, step for step and dtype for dtype.

``torch.optim.Adam`` is not Keras's Adam with another name: Keras adds epsilon
to the *uncorrected* ``sqrt(v)``, folds both bias corrections into the step
size, and rounds β₁, β₂ to float32 before raising them to the step count.
``KerasAdam`` transcribes ``keras.optimizers.Adam.update_step``
(``keras/src/optimizers/adam.py``, Keras 3) so that trajectories trained here
and with ``model.compile(optimizer="adam")`` stay together (float64: ≤ 1e-10
after 50 steps on the seed models; see ``parity_tests/test_training_parity.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import ParamsT

# keras.optimizers.Adam's defaults.
KERAS_ADAM_LEARNING_RATE = 1e-3
KERAS_ADAM_BETA_1 = 0.9
KERAS_ADAM_BETA_2 = 0.999
KERAS_ADAM_EPSILON = 1e-7

# The dtype TensorFlow gives a Python float: ``ops.cast(self.beta_1, variable.dtype)``
# is ``tf.cast(0.9, dtype)``, which makes a float32 tensor first, whatever Keras's floatx.
_TF_PYTHON_FLOAT_DTYPE = torch.float32
# Dtypes whose scalar pow and sqrt NumPy computes with the C library, as TensorFlow does.
_NUMPY_DTYPES: dict[torch.dtype, type[np.floating[Any]]] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
}


class KerasAdam(torch.optim.Optimizer):
    """Adam exactly as ``keras.optimizers.Adam`` (Keras 3) updates a variable.

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
      ``optimizer.iterations``), kept per parameter group, not per parameter:
      a parameter whose gradient was ``None`` for a while still sees the
      global ``t``, as in Keras.
    - **learning rate**: Keras keeps it in a variable of ``floatx`` and casts
      that to the variable's dtype. With ``lr_dtype=None`` the Python ``lr``
      is rounded straight to each parameter's dtype (Keras whenever floatx is
      the model's dtype); pass ``lr_dtype=torch.float32`` to match a float64
      Keras model trained under the default float32 floatx.

    No weight decay, clipping, EMA or sparse gradients (Keras's defaults).

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

    def __init__(
        self,
        params: ParamsT,
        lr: float = KERAS_ADAM_LEARNING_RATE,
        betas: tuple[float, float] = (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
        eps: float = KERAS_ADAM_EPSILON,
        amsgrad: bool = False,
        *,
        lr_dtype: torch.dtype | None = None,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0. Received: lr={lr}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0. Received: eps={eps}")
        beta_1, beta_2 = betas
        if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1). Received: betas={betas}")
        if lr_dtype is not None and not lr_dtype.is_floating_point:
            raise ValueError(f"lr_dtype must be a floating dtype. Received: lr_dtype={lr_dtype}")
        defaults: dict[str, Any] = {
            "lr": lr,
            "betas": (beta_1, beta_2),
            "eps": eps,
            "amsgrad": amsgrad,
            "lr_dtype": lr_dtype,
            "step": 0,  # Keras's ``iterations``: calls to step() so far
        }
        super().__init__(params, defaults)

    @property
    def iterations(self) -> int:
        """Completed steps, as Keras's ``optimizer.iterations`` (of the first group)."""
        return int(self.param_groups[0]["step"]) if self.param_groups else 0

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Keras Adam update of every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict[str, Any]) -> None:
        local_step = int(group["step"]) + 1  # Keras: iterations + 1
        scalars: dict[torch.dtype, float] = {}
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("KerasAdam does not support sparse gradients")
            if p.dtype not in scalars:
                scalars[p.dtype] = _step_size(group, p.dtype, local_step)
            alpha = scalars[p.dtype]
            g = p.grad.to(p.dtype)  # Keras: ops.cast(gradient, variable.dtype)
            state = self.state[p]
            if not state:
                state["m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["amsgrad"]:
                    state["v_hat"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            m, v = state["m"], state["v"]
            beta_1, beta_2 = group["betas"]
            m.add_(g.sub(m).mul_(1 - beta_1))
            v.add_(g.square().sub_(v).mul_(1 - beta_2))
            if group["amsgrad"]:
                v_hat = state["v_hat"]
                torch.maximum(v_hat, v, out=v_hat)
                v = v_hat
            p.sub_(m.mul(alpha).div_(ieee_sqrt(v).add_(group["eps"])))
        group["step"] = local_step


@torch.compiler.disable  # type: ignore[untyped-decorator]  # dynamo would turn np.sqrt back into torch.sqrt
def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` correctly rounded, as TensorFlow's (and IEEE 754's) square root.

    torch's CPU ``sqrt`` is not always correctly rounded: with torch 2.13 on an
    AVX-512 CPU about 20% of float32 and 1.4% of float64 results were one ulp off
    (at every ``ATEN_CPU_CAPABILITY``), enough to part from Keras by an ulp within
    a few Adam steps. On the CPU the root is taken by NumPy (the C library's
    ``sqrt``, exact) on the same memory; on CUDA torch's ``sqrt`` is IEEE-exact
    already and is used (other accelerators: torch's, unchecked). The result
    carries no gradient (the optimizer needs none); ``torch.compile`` leaves this
    function out of its graphs, so compiled callers keep the exact root.
    """
    if x.device.type != "cpu":
        return x.sqrt()
    if x.dtype not in _NUMPY_DTYPES:  # float16/bfloat16: exact in float64, then rounded
        root: torch.Tensor = ieee_sqrt(x.to(torch.float64))
        return root.to(x.dtype)
    return torch.from_numpy(np.sqrt(x.detach().numpy()))


def _step_size(group: dict[str, Any], dtype: torch.dtype, local_step: int) -> float:
    """Keras's ``alpha = lr * sqrt(1 - β₂ᵗ) / (1 - β₁ᵗ)``, computed in ``dtype``.

    Returned as a Python float that ``dtype`` holds exactly, so multiplying a
    tensor of ``dtype`` by it (on any device) uses the very value Keras uses.
    For float32 and float64 the scalars are NumPy's, whose ``**`` and ``sqrt``
    are the C library's ``pow``/``sqrt``, as in TensorFlow's scalar kernels
    (torch's CPU ``pow`` and ``sqrt`` differ from them by an ulp at some steps).
    """
    beta_1, beta_2 = group["betas"]
    np_dtype = _NUMPY_DTYPES.get(dtype)
    np_lr_dtype = _NUMPY_DTYPES.get(group["lr_dtype"] or dtype)
    if np_dtype is None or np_lr_dtype is None:
        lr = torch.tensor(float(group["lr"]), dtype=group["lr_dtype"] or dtype).to(dtype)
        t = torch.tensor(float(local_step), dtype=dtype)
        beta_1_power = torch.tensor(beta_1, dtype=_TF_PYTHON_FLOAT_DTYPE).to(dtype).pow(t)
        beta_2_power = torch.tensor(beta_2, dtype=_TF_PYTHON_FLOAT_DTYPE).to(dtype).pow(t)
        alpha = lr * ieee_sqrt(1 - beta_2_power) / (1 - beta_1_power)
        return float(alpha.item())
    one = np_dtype(1)
    lr_np = np_dtype(np_lr_dtype(group["lr"]))
    t_np = np_dtype(local_step)
    # tf.cast(python_float, dtype) goes through float32 (see _TF_PYTHON_FLOAT_DTYPE).
    b1_power = np_dtype(np.float32(beta_1)) ** t_np
    b2_power = np_dtype(np.float32(beta_2)) ** t_np
    return float(lr_np * np.sqrt(one - b2_power) / (one - b1_power))
