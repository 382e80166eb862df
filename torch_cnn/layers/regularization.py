"""Keras's noise layers: identity at inference, Keras's scaling in training, torch's RNG.

keras/src/layers/regularization/. In training mode (``module.train()``):

* ``Dropout``: zero with probability ``rate``, scale the rest by ``1 / (1 - rate)``
  (torch's ``nn.Dropout``; ``NoiseShapeDropout`` for a Keras ``noise_shape``, one draw
  per position of the noise shape, broadcast over the axes where it is 1);
* ``SpatialDropout2D``: whole channels (torch's ``nn.Dropout2d``);
* ``GaussianNoise``: ``x + N(0, stddev)``;
* ``GaussianDropout``: ``x * N(1, sqrt(rate / (1 - rate)))``.

The random numbers come from torch's generator, so ``torch.manual_seed`` makes a run
repeat bit for bit; a Keras ``seed`` cannot reproduce TensorFlow's stream and is not
used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["GaussianDropout", "GaussianNoise", "NoiseShapeDropout"]


class NoiseShapeDropout(nn.Module):
    """Keras's ``Dropout(rate, noise_shape=...)``: one keep/drop draw per noise-shape entry.

    ``noise_shape`` is in torch layout with the batch dim, ``None`` where the input's
    size is taken (Keras's ``(None, 1, 1, C)`` on a map is ``(None, C, 1, 1)`` here).
    """

    def __init__(self, rate: float, noise_shape: Sequence[int | None]) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be in [0, 1]. Received: rate={rate}")
        self.rate = float(rate)
        self.noise_shape = tuple(noise_shape)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        if self.rate == 1.0:
            return torch.zeros_like(x)
        shape = [x.shape[i] if s is None else s for i, s in enumerate(self.noise_shape)]
        keep = 1.0 - self.rate
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep) / keep
        return x * mask

    def extra_repr(self) -> str:
        return f"rate={self.rate}, noise_shape={self.noise_shape}"


class GaussianNoise(nn.Module):
    """Keras's ``GaussianNoise(stddev)``: adds ``N(0, stddev)`` noise in training mode."""

    def __init__(self, stddev: float) -> None:
        super().__init__()
        self.stddev = float(stddev)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.stddev == 0.0:
            return x
        return x + torch.randn_like(x) * self.stddev

    def extra_repr(self) -> str:
        return f"stddev={self.stddev}"


class GaussianDropout(nn.Module):
    """Keras's ``GaussianDropout(rate)``: multiplies by ``N(1, sqrt(rate / (1 - rate)))`` in training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:  # Keras divides by 1 - rate
            raise ValueError(f"rate must be in [0, 1). Received: rate={rate}")
        self.rate = float(rate)
        self.stddev = math.sqrt(rate / (1.0 - rate))

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        return x * (torch.randn_like(x) * self.stddev + 1.0)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
