"""Keras's merge layers (keras/src/layers/merging/) on torch-layout tensors.

``Merge`` folds its inputs left to right with one elementwise op (``Add``,
``Subtract``, ``Multiply``, ``Average`` = sum / n, ``Maximum``, ``Minimum``; also
the two-tensor Keras ops ``divide``/``power``), broadcasting as Keras does. Inputs
of lower rank are first given size-1 axes after the batch axis, as Keras's
``Merge`` does, then laid out like the output (``Align``). ``Concatenate`` is
``torch.cat`` along the torch dim of Keras's axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from torch_cnn.layers.core import BINARY_OPS

__all__ = ["Align", "Concatenate", "Merge"]

MERGE_MODES = ("add", "subtract", "multiply", "average", "maximum", "minimum", "divide", "power")


def _order(order: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if order is None else tuple(int(i) for i in order)


class Align(nn.Module):
    """A view of one merge input laid out like the merge output.

    Keras expands a lower-rank input with size-1 axes after the batch axis; a map
    (NCHW in torch) is moved to Keras's order first and back after, as needed.
    """

    def __init__(self, from_map: bool, expand: int, to_map: bool) -> None:
        super().__init__()
        self.from_map = from_map
        self.expand = expand
        self.to_map = to_map

    def forward(self, x: Tensor) -> Tensor:
        if self.from_map:
            x = x.permute(0, 2, 3, 1)  # NCHW → Keras's NHWC
        for _ in range(self.expand):
            x = x.unsqueeze(1)
        if self.to_map:
            x = x.permute(0, 3, 1, 2)
        return x

    def extra_repr(self) -> str:
        return f"from_map={self.from_map}, expand={self.expand}, to_map={self.to_map}"


class Merge(nn.Module):
    """Keras's elementwise merge of ``n`` tensors, folded left to right.

    ``aligns`` holds an ``Align`` per input whose layout differs from the output's
    (``None`` where it is used as is). ``order`` picks the module's arguments in the
    order of Keras's input list where that differs (``Add()([x, x])`` called on ``x``).

    >>> Merge("average")(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([6.0]))
    tensor([3.])
    """

    def __init__(
        self,
        mode: str,
        aligns: Sequence[Align | None] = (),
        *,
        order: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if mode not in MERGE_MODES:
            raise ValueError(f"mode must be one of {MERGE_MODES}. Received: mode={mode!r}")
        self.mode = mode
        self._op = BINARY_OPS["add" if mode == "average" else mode][0]
        self.aligns = nn.ModuleList([a if a is not None else nn.Identity() for a in aligns])
        self._aligned = any(a is not None for a in aligns)
        self.order = _order(order)

    def forward(self, *inputs: Tensor) -> Tensor:
        xs: Sequence[Tensor] = inputs
        if self.order is not None:
            xs = [inputs[i] for i in self.order]
        if self._aligned:
            xs = [a(x) for a, x in zip(self.aligns, xs, strict=True)]
        out = xs[0]
        for x in xs[1:]:
            out = self._op(out, x)
        if self.mode == "average":
            out = out / len(xs)
        return out

    def extra_repr(self) -> str:
        return self.mode


class Concatenate(nn.Module):
    """Keras's ``Concatenate(axis)`` as ``torch.cat`` along torch dim ``dim``."""

    def __init__(self, dim: int, *, order: Sequence[int] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.order = _order(order)

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.order is not None:
            return torch.cat([inputs[i] for i in self.order], dim=self.dim)
        return torch.cat(inputs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
