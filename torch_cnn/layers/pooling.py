"""Keras's ``MaxPooling2D`` (pool = stride, 'valid') as torch's max-pool, faster on the CPU.

On the CPU, torch's ``max_pool2d`` over a contiguous NCHW tensor is slow: with torch 2.13
on a 2-core CPU it took 25 ms for a (256, 32, 30, 30) batch, 36% of ``model_cifar10``'s
inference, where the elementwise maximum of the window's k² strided views takes 2.7 ms.
Without autograd (inference, evaluation) ``MaxPool2d`` computes that maximum for
non-overlapping windows (kernel = stride, no padding, no dilation, floor mode): the values
of ``F.max_pool2d``, bit for bit, and NaN wherever it has NaN (a window holding NaNs of
both signs may give the other sign). When a gradient is needed it calls
``F.max_pool2d``, whose indices make the backward pass cheap (a hand-written backward of
the strided maximum cost more than it saved). Anything else (overlapping windows, CUDA,
channels_last, all fast already) goes to ``F.max_pool2d`` too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _windows(x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The k² strided views of ``x`` (N, C, H, W), one per window offset, in row-major order."""
    h, w = x.shape[-2] // k * k, x.shape[-1] // k * k  # floor: the remainder is dropped
    return [x[..., i:h:k, j:w:k] for i in range(k) for j in range(k)]


def max_pool2d(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size)`` (stride = kernel, no padding), bit for bit.

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool2d(x, 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    fast = (
        not (x.requires_grad and torch.is_grad_enabled())  # training: torch's, with indices
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.is_contiguous()  # NCHW; channels_last is fast in torch already
        and x.is_floating_point()
        and min(x.shape[-2:]) >= kernel_size
    )
    if not fast:
        return F.max_pool2d(x, kernel_size)
    views = _windows(x, kernel_size)
    out = views[0].contiguous()
    for v in views[1:]:
        torch.maximum(out, v, out=out)  # NaN propagates, as in max_pool2d
    return out


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d(k)`` whose forward is ``max_pool2d`` above when its windows do not overlap.

    Mirrors Keras's ``MaxPooling2D(pool_size=k)`` (strides default to the pool size,
    padding 'valid'). Porting, the summary and the state dict see an ``nn.MaxPool2d``.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        plain = (
            isinstance(self.kernel_size, int)
            and self.stride in (self.kernel_size, (self.kernel_size, self.kernel_size))
            and self.padding in (0, (0, 0))
            and self.dilation in (1, (1, 1))
            and not self.ceil_mode
            and not self.return_indices
        )
        if not plain:
            return super().forward(input)  # type: ignore[no-any-return]
        return max_pool2d(input, self.kernel_size)  # type: ignore[arg-type]
