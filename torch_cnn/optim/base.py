"""What Keras's ``BaseOptimizer`` does around each ``update_step``, for the optimizers here.

``BaseOptimizer.apply`` (``keras/src/optimizers/base_optimizer.py``, with the TensorFlow
overrides of ``keras/src/backend/tensorflow/optimizer.py``):

1. gradients that are ``None`` are left out (their variables are not touched);
2. ``_clip_gradients``: ``clipnorm`` (each gradient to an L2 norm of at most
   ``clipnorm``), else ``global_clipnorm`` (all of them together), else ``clipvalue``
   (elementwise); at most one of them may be set;
3. ``_apply_weight_decay``: ``w -= w * wd * lr`` for every variable with a gradient,
   *before* the update, ``wd`` cast through float32;
4. ``update_step`` for each variable, with the gradient cast to the variable's dtype;
5. ``iterations += 1``.

Where each scalar is rounded is what makes the numbers agree bit for bit. TensorFlow
turns a Python float into a tensor in two ways: ``ops.cast(0.9, dtype)`` (``tf.cast``)
makes a float32 tensor first and then casts it (``ieee.tf_cast``), while a Python
float met by an arithmetic op (``ops.multiply(m, 0.1)``, ``v + 1e-7``) is converted
straight to the tensor's dtype (``ieee.as_dtype``). The learning rate is a Keras
variable of ``floatx``, cast to each variable's dtype (``lr_dtype``).

Each ``update_step`` is written once over "tensor-likes": a single tensor (the CPU
path: all of one parameter's arithmetic while it is in cache) or ``_Many`` tensors
(one ``torch._foreach_*`` multi-tensor kernel per operation, the CUDA path). Only
operations that round as TensorFlow's do are used: no ``alpha=`` scaling, ``lerp`` or
``addcmul``, which may fuse a multiply and an add; ``addcdiv_`` only with ``value=±1``
(``p + (±t1)/t2`` is exact whichever way a kernel groups it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import torch
from torch.optim.optimizer import ParamsT

from torch_cnn.optim.ieee import as_dtype, ieee_sqrt, ieee_sqrt_all, tf_cast

# Keras's optimizer variables after iterations and learning_rate: blocks of slot names,
# each block interleaved per model variable (see keras_state.py).
SlotLayout = tuple[tuple[str, ...], ...]
Scalars = dict[str, float]


class _Many:
    """Same-device, same-dtype tensors updated together, one ``torch._foreach_*`` op at a time.

    The methods mirror the ``torch.Tensor`` methods the update steps use, so the same
    transcription runs on one tensor or on many.
    """

    __slots__ = ("ts",)

    def __init__(self, ts: Sequence[torch.Tensor]) -> None:
        self.ts = list(ts)

    def add(self, other: float) -> _Many:
        return _Many(torch._foreach_add(self.ts, other))

    def sub(self, other: _Many) -> _Many:
        return _Many(torch._foreach_sub(self.ts, other.ts))

    def mul(self, other: _Many | float) -> _Many:
        if isinstance(other, _Many):
            return _Many(torch._foreach_mul(self.ts, other.ts))
        return _Many(torch._foreach_mul(self.ts, other))

    def add_(self, other: _Many | float) -> _Many:
        if isinstance(other, _Many):
            torch._foreach_add_(self.ts, other.ts)
        else:
            torch._foreach_add_(self.ts, other)
        return self

    def sub_(self, other: _Many) -> _Many:
        torch._foreach_sub_(self.ts, other.ts)
        return self

    def mul_(self, other: float) -> _Many:
        torch._foreach_mul_(self.ts, other)
        return self

    def addcdiv_(self, t1: _Many, t2: _Many, *, value: float) -> _Many:
        torch._foreach_addcdiv_(self.ts, t1.ts, t2.ts, value)
        return self


T = TypeVar("T", torch.Tensor, _Many)


def sqrt(x: T) -> T:
    """Correctly rounded square root (``ieee.ieee_sqrt``) of a tensor or of many."""
    if isinstance(x, _Many):
        return _Many(ieee_sqrt_all(x.ts))
    root: torch.Tensor = ieee_sqrt(x)
    return root


def maximum_(a: T, b: T) -> None:
    """``a = maximum(a, b)`` in place."""
    if isinstance(a, _Many) and isinstance(b, _Many):
        torch._foreach_maximum_(a.ts, b.ts)
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        torch.maximum(a, b, out=a)


# Every Keras optimizer's options beyond its own hyperparameters; None is "off" for each.
_OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "lr_dtype", "foreach")


class KerasOptimizer(torch.optim.Optimizer):
    """Keras's base optimizer; subclasses transcribe one Keras ``update_step``.

    Options shared by every Keras optimizer (keyword-only in the subclasses):

    - ``weight_decay``: ``None`` (off) or Keras's decoupled decay, applied before the
      update as ``w -= w * wd * lr``. A param group with ``"weight_decay": None`` is
      left undecayed: Keras's ``exclude_from_weight_decay`` (see ``weight_decay_param_groups``).
    - ``clipnorm``, ``clipvalue``, ``global_clipnorm``: Keras's gradient clipping, at
      most one of them; ``None`` or 0 is off. They act on all gradients of a step
      together, so they must be the same in every param group. The L2 norms are sums
      whose order TensorFlow's Eigen kernels choose, so where a norm decides the result
      (a gradient clipped by ``clipnorm``, any ``global_clipnorm`` scale) it can differ
      from Keras's by an ulp; ``clipvalue`` and unclipped gradients are exact.
    - ``lr_dtype``: the dtype of Keras's learning-rate variable (``floatx``). ``None``
      rounds ``lr`` straight to each parameter's dtype (Keras whenever floatx is the
      model's dtype); ``torch.float32`` matches a float64 model under float32 floatx.
    - ``foreach``: ``None`` updates CPU parameters one at a time (faster there: each stays
      in cache through its update) and others with multi-tensor ``torch._foreach_*``
      kernels; ``True``/``False`` force either. The numbers are the same.

    ``iterations`` (Keras's ``optimizer.iterations``) counts calls to ``step()`` that found
    a gradient; it is kept in every param group as ``"step"``, the same in all of them. Keras's EMA
    (``use_ema``), learning-rate schedules, ``loss_scale_factor`` and
    ``gradient_accumulation_steps`` are not supported; to change the learning rate,
    set ``param_group["lr"]`` between steps (Keras: ``optimizer.learning_rate = x``).
    """

    keras_class_name = ""  # the keras.optimizers class transcribed

    def __init__(
        self,
        params: ParamsT,
        defaults: dict[str, Any],
        *,
        weight_decay: float | None,
        clipnorm: float | None,
        clipvalue: float | None,
        global_clipnorm: float | None,
        lr_dtype: torch.dtype | None,
        foreach: bool | None,
    ) -> None:
        lr = defaults["lr"]
        if isinstance(lr, bool) or not isinstance(lr, int | float):
            raise ValueError(
                f"{type(self).__name__} takes a float learning rate (Keras learning-rate "
                "schedules are not supported; set param_group['lr'] between steps instead). "
                f"Received: lr={lr!r}"
            )
        if not lr >= 0.0:
            raise ValueError(f"lr must be >= 0. Received: lr={lr}")
        if weight_decay is not None and not weight_decay >= 0.0:
            raise ValueError(
                f"weight_decay must be None or >= 0. Received: weight_decay={weight_decay}"
            )
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue, "global_clipnorm": global_clipnorm}
        if sum(v is not None for v in clips.values()) > 1:
            received = ", ".join(f"{k}={v}" for k, v in clips.items())
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: {received}"
            )
        if lr_dtype is not None and not lr_dtype.is_floating_point:
            raise ValueError(f"lr_dtype must be a floating dtype. Received: lr_dtype={lr_dtype}")
        defaults = {
            **defaults,
            "lr": float(lr),
            "weight_decay": weight_decay,
            **clips,
            "lr_dtype": lr_dtype,
            "foreach": foreach,
            "step": 0,  # Keras's ``iterations``: calls to step() so far
        }
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """As torch's; groups saved before an option existed get its default (``load_state_dict``)."""
        super().__setstate__(state)
        for group in self.param_groups:
            for key in _OPTIONS:
                group.setdefault(key, None)

    @property
    def iterations(self) -> int:
        """Completed steps, as Keras's ``optimizer.iterations``."""
        return int(self.param_groups[0]["step"]) if self.param_groups else 0

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As torch's; a group added after some steps starts at the current ``iterations``."""
        if self.param_groups and "step" not in param_group:
            param_group["step"] = self.iterations
        super().add_param_group(param_group)

    def keras_slots(self, group: dict[str, Any]) -> SlotLayout:
        """The state keys of Keras's per-variable optimizer variables, in ``build`` order."""
        raise NotImplementedError

    def _scalars(self, group: dict[str, Any], dtype: torch.dtype, local_step: int) -> Scalars:
        """The update's scalars, each rounded as TensorFlow rounds it for ``dtype``."""
        raise NotImplementedError

    def _update(self, group: dict[str, Any], c: Scalars, p: T, g: T, slots: dict[str, T]) -> None:
        """Keras's ``update_step``, on one parameter or on many of one device and dtype."""
        raise NotImplementedError

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One Keras ``apply``: clip, decay and update every parameter that has a gradient."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            self._apply()
        return loss

    def _apply(self) -> None:
        live = [(g, [p for p in g["params"] if p.grad is not None]) for g in self.param_groups]
        grads: list[torch.Tensor] = [p.grad for _, ps in live for p in ps if p.grad is not None]
        if not grads:  # Keras refuses such a step ("No gradients provided"); not a step here
            return
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        clipped = iter(self._clip_gradients(grads))
        for group, ps in live:
            buckets: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], ...]] = {}
            for p in ps:
                bucket = buckets.setdefault((p.device, p.dtype), ([], []))
                bucket[0].append(p)
                bucket[1].append(next(clipped).to(p.dtype))  # Keras: ops.cast(gradient, dtype)
            local_step = int(group["step"]) + 1  # Keras: iterations + 1
            for (device, dtype), (params, gs) in buckets.items():
                self._apply_bucket(group, device, dtype, local_step, params, gs)
            group["step"] = local_step

    def _apply_bucket(
        self,
        group: dict[str, Any],
        device: torch.device,
        dtype: torch.dtype,
        local_step: int,
        params: list[torch.Tensor],
        grads: list[torch.Tensor],
    ) -> None:
        c = self._scalars(group, dtype, local_step)
        decay = None
        if group["weight_decay"] is not None:  # (w * wd) * lr, as TF's _apply_weight_decay
            decay = (tf_cast(group["weight_decay"], dtype), _lr(group, dtype))
        states = [self._state_of(group, p) for p in params]
        foreach = group["foreach"]
        if foreach or (foreach is None and device.type != "cpu"):
            keys = [key for block in self.keras_slots(group) for key in block]
            slots = {key: _Many([s[key] for s in states]) for key in keys}
            many = _Many(params)
            if decay is not None:
                many.sub_(many.mul(decay[0]).mul_(decay[1]))
            self._update(group, c, many, _Many(grads), slots)
            return
        for p, g, state in zip(params, grads, states, strict=True):
            if decay is not None:
                p.sub_(p.mul(decay[0]).mul_(decay[1]))
            self._update(group, c, p, g, state)

    def _state_of(self, group: dict[str, Any], p: torch.Tensor) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = self.state[p]
        for block in self.keras_slots(group):
            for key in block:
                if key not in state:  # Keras's slots start at zero
                    state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _clip_gradients(self, grads: Sequence[torch.Tensor]) -> Sequence[torch.Tensor]:
        """``BaseOptimizer._clip_gradients``: new tensors, the ``.grad`` tensors are left as they are."""
        settings = {
            (g["clipnorm"], g["clipvalue"], g["global_clipnorm"]) for g in self.param_groups
        }
        if len(settings) > 1:
            raise ValueError(
                "clipnorm, clipvalue and global_clipnorm must be the same in every param group "
                "(Keras clips all gradients of a step with one setting). "
                f"Received: {sorted(settings, key=str)}"
            )
        clipnorm, clipvalue, global_clipnorm = settings.pop()
        if clipnorm and clipnorm > 0:
            return [_clip_by_norm(g, clipnorm) for g in grads]
        if global_clipnorm and global_clipnorm > 0:
            return _clip_by_global_norm(grads, global_clipnorm)
        if clipvalue and clipvalue > 0:
            return [g.clamp(-clipvalue, clipvalue) for g in grads]  # tf.clip_by_value
        return grads


def _lr(group: dict[str, Any], dtype: torch.dtype) -> float:
    """``ops.cast(learning_rate, variable.dtype)`` of Keras's floatx learning-rate variable."""
    return as_dtype(as_dtype(group["lr"], group["lr_dtype"] or dtype), dtype)


def _clip_by_norm(g: torch.Tensor, clipnorm: float) -> torch.Tensor:
    """``tf.clip_by_norm(g, clipnorm)``: ``g * c / max(‖g‖, c)``, computed even when ‖g‖ < c."""
    l2sum = (g * g).sum()  # TF sums in another order: the last bit of ‖g‖ can differ
    positive = l2sum > 0
    l2norm = torch.where(positive, ieee_sqrt(torch.where(positive, l2sum, 1.0)), l2sum)
    return (g * clipnorm) / torch.clamp(l2norm, min=clipnorm)


def _clip_by_global_norm(grads: Sequence[torch.Tensor], clip_norm: float) -> list[torch.Tensor]:
    """``clip_by_global_norm`` of base_optimizer.py, with its NaN-making ``+ (n - n)``."""
    squared = [(g * g).sum() for g in grads]
    dtype = squared[0].dtype
    for s in squared[1:]:
        dtype = torch.promote_types(dtype, s.dtype)  # ops.stack's result_type
    norm = ieee_sqrt(torch.stack([s.to(dtype) for s in squared]).sum())
    inverse = torch.tensor(as_dtype(1.0 / clip_norm, dtype), dtype=dtype)
    scale = clip_norm * torch.minimum(1.0 / norm, inverse) + (norm - norm)
    return [g.to(torch.promote_types(g.dtype, dtype)) * scale for g in grads]


def weight_decay_param_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], var_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Param groups that leave out of weight decay what Keras's ``exclude_from_weight_decay``
    (``var_names=...``) would: every parameter whose name ``re.search``-matches one of
    ``var_names``. Keras matches its own variable names (``kernel``, ``bias``); torch's
    are ``fc.weight``, ``fc.bias``, so ``["bias"]`` works for both.

    >>> layer = torch.nn.Linear(2, 1)
    >>> groups = weight_decay_param_groups(layer.named_parameters(), ["bias"])
    >>> [len(g["params"]) for g in groups], groups[1]["weight_decay"]
    ([1, 1], None)
    """
    pattern = re.compile("|".join(var_names)) if var_names else None
    decayed: list[torch.nn.Parameter] = []
    excluded: list[torch.nn.Parameter] = []
    for name, p in named_parameters:
        (excluded if pattern is not None and pattern.search(name) else decayed).append(p)
    return [{"params": decayed}, {"params": excluded, "weight_decay": None}]
