"""What flows along an edge of a converted Keras graph: ``TensorSpec`` (shape and layout).

Keras keeps images channels-last; torch computes them channels-first. A rank-3 Keras
per-sample shape ``(H, W, C)`` (an image map) is carried as an NCHW tensor; every other
rank is carried exactly as Keras holds it. Layers, converters and the graph model all
describe tensors this way, so it lives at the bottom of the package.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    """What flows along one edge of the graph, per sample (the batch axis is implied).

    ``shape`` is Keras's shape without the batch axis, e.g. ``(32, 32, 3)`` or
    ``(10,)``; ``None`` marks a size known only at run time. A rank-3 shape is
    carried NCHW in torch. ``chw`` is set only on the output of a ``Flatten``
    that kept torch's (C, H, W) order (see the module docstring).
    """

    shape: tuple[int | None, ...]
    chw: tuple[int, int, int] | None = None

    @property
    def is_map(self) -> bool:
        """An image map: Keras ``(H, W, C)``, carried as torch ``(C, H, W)``."""
        return len(self.shape) == 3

    @property
    def torch_shape(self) -> tuple[int | None, ...]:
        """The per-sample shape of the torch tensor: ``(C, H, W)`` for maps."""
        if self.is_map:
            h, w, c = self.shape
            return (c, h, w)
        return self.shape

    def keras_axis(self, axis: int) -> int:
        """A Keras axis (batch = 0, negative counts from the end) as a non-negative Keras axis."""
        rank = len(self.shape) + 1
        if not -rank <= axis < rank:
            raise ValueError(f"axis {axis} is out of range for a rank-{rank} tensor {self}")
        return axis % rank

    def torch_axis(self, axis: int) -> int:
        """The torch dimension that holds Keras axis ``axis`` (H → 2, W → 3, C → 1 for maps)."""
        a = self.keras_axis(axis)
        if self.is_map:
            return (0, 2, 3, 1)[a]
        return a

    def keras_str(self) -> str:
        """The shape as Keras prints it, batch axis included: ``(None, 16, 16, 10)``."""
        return "(" + ", ".join(["None", *map(str, self.shape)]) + ")"
