"""Keras's ``Dense`` on image maps, ``Rescaling``, and Keras ops with constants.

* ``ChannelLinear`` is ``nn.Linear`` applied to dim 1 of an NCHW map: Keras's
  ``Dense`` acts on the last (channel) axis of whatever it receives
  (keras/src/layers/core/dense.py). On ``(N, C)`` and on ranks carried in Keras's
  order the converter uses ``nn.Linear`` itself.
* ``Rescaling`` is ``x * scale + offset`` (keras/src/layers/preprocessing/rescaling.py).
* ``ScalarOp``/``UnaryOp`` are Keras ops recorded in a functional graph
  (``x + 3.0``, ``3.0 - x``, ``keras.ops.sqrt(x)``; keras/src/ops/numpy.py),
  with the constant cast to the tensor's dtype as Keras casts it. ``c / x`` divides
  (torch's ``c / tensor`` multiplies by ``reciprocal(x)``, which rounds differently).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BINARY_OPS", "UNARY_OPS", "ChannelLinear", "Rescaling", "ScalarOp", "UnaryOp"]


class ChannelLinear(nn.Linear):
    """Keras's ``Dense`` on an NCHW map: ``nn.Linear`` over the channels (dim 1).

    State-dict keys are ``weight``/``bias`` as for ``nn.Linear``.

    >>> m = ChannelLinear(3, 5)
    >>> m(torch.zeros(2, 3, 4, 4)).shape
    torch.Size([2, 5, 4, 4])
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input.movedim(1, -1), self.weight, self.bias).movedim(-1, 1)


class _Constant(nn.Module):
    """Holds a constant: a Python number (cast by torch as Keras casts it) or a tensor buffer."""

    value: Tensor | None

    def __init__(
        self,
        value: float | np.ndarray,
        *,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        as_tensor: bool = False,
    ) -> None:
        super().__init__()
        array = np.asarray(value)
        if array.ndim == 0 and not as_tensor:
            self.number: float | None = float(array)
            self.value = None
        else:
            self.number = None
            # Non-persistent: a constant of the model's code, not a weight; moves with .to().
            self.register_buffer(
                "value",
                torch.tensor(array, dtype=dtype or torch.get_default_dtype(), device=device),
                persistent=False,
            )

    def constant(self) -> float | Tensor:
        if self.value is not None:
            return self.value
        assert self.number is not None
        return self.number


class Rescaling(_Constant):
    """Keras's ``Rescaling(scale, offset)``: ``x * scale + offset``.

    ``scale``/``offset`` are numbers or arrays already in torch layout (``(C, 1, 1)``
    for per-channel values on a map); a zero offset is skipped.
    """

    def __init__(
        self,
        scale: float | np.ndarray,
        offset: float | np.ndarray = 0.0,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(scale, device=device, dtype=dtype)
        self.offset = _Constant(offset, device=device, dtype=dtype)
        self._has_offset = bool(np.any(np.asarray(offset) != 0))

    def forward(self, x: Tensor) -> Tensor:
        y = x * self.constant()
        return y + self.offset.constant() if self._has_offset else y

    def extra_repr(self) -> str:
        scale = self.number if self.value is None else tuple(self.value.shape)
        offset = self.offset.number if self.offset.value is None else tuple(self.offset.value.shape)
        return f"scale={scale}, offset={offset}"


def _rsub(x: Tensor, c: float | Tensor) -> Tensor:
    return torch.rsub(x, c)  # c - x


def _rdiv(x: Tensor, c: float | Tensor) -> Tensor:
    assert isinstance(c, Tensor)
    return torch.div(c, x)


def _rpow(x: Tensor, c: float | Tensor) -> Tensor:
    return torch.pow(c, x)


def _maximum(a: Tensor, b: float | Tensor) -> Tensor:
    return torch.clamp_min(a, b) if not isinstance(b, Tensor) else torch.maximum(a, b)


def _minimum(a: Tensor, b: float | Tensor) -> Tensor:
    return torch.clamp_max(a, b) if not isinstance(b, Tensor) else torch.minimum(a, b)


# Keras op name → (x op c, c op x). Both tensors: the first.
BINARY_OPS: dict[
    str,
    tuple[Callable[[Tensor, float | Tensor], Tensor], Callable[[Tensor, float | Tensor], Tensor]],
] = {
    "add": (torch.add, torch.add),
    "subtract": (torch.sub, _rsub),
    "multiply": (torch.mul, torch.mul),
    "divide": (torch.div, _rdiv),
    "power": (torch.pow, _rpow),
    "maximum": (_maximum, _maximum),
    "minimum": (_minimum, _minimum),
}

UNARY_OPS: dict[str, Callable[[Tensor], Tensor]] = {
    "negative": torch.neg,
    "absolute": torch.abs,
    "square": torch.square,
    "sqrt": torch.sqrt,
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "reciprocal": torch.reciprocal,
}


class ScalarOp(_Constant):
    """A Keras elementwise op between a tensor and a constant: ``x + 3.0``, ``3.0 - x``, ``x / 2``.

    ``reverse`` puts the constant first. The constant is a Python number where torch
    casts it to the tensor's dtype exactly as Keras does, else a 0-d (or broadcastable)
    buffer in torch layout.

    >>> ScalarOp("subtract", 3.0, reverse=True)(torch.tensor([1.0, 5.0]))
    tensor([ 2., -2.])
    """

    def __init__(
        self,
        op: str,
        constant: float | np.ndarray,
        *,
        reverse: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if op not in BINARY_OPS:
            raise ValueError(f"op must be one of {sorted(BINARY_OPS)}. Received: op={op!r}")
        # c / x needs a tensor dividend (torch's scalar form multiplies by a reciprocal).
        super().__init__(constant, device=device, dtype=dtype, as_tensor=reverse and op == "divide")
        self.op = op
        self.reverse = reverse
        self._fn = BINARY_OPS[op][1 if reverse else 0]

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x, self.constant())

    def extra_repr(self) -> str:
        c = self.number if self.value is None else f"tensor{tuple(self.value.shape)}"
        return f"{c} {self.op} x" if self.reverse else f"x {self.op} {c}"


class UnaryOp(nn.Module):
    """A Keras elementwise op of one tensor (``negative``, ``sqrt``, ``clip`` ...)."""

    def __init__(self, op: str, *, clip: tuple[float, float] | None = None) -> None:
        super().__init__()
        if op != "clip" and op not in UNARY_OPS:
            raise ValueError(
                f"op must be one of {sorted([*UNARY_OPS, 'clip'])}. Received: op={op!r}"
            )
        self.op = op
        self.clip = clip

    def forward(self, x: Tensor) -> Tensor:
        if self.clip is not None:
            return torch.clamp(x, self.clip[0], self.clip[1])
        return UNARY_OPS[self.op](x)

    def extra_repr(self) -> str:
        return self.op if self.clip is None else f"clip{self.clip}"
