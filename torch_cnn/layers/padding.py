"""TensorFlow's ``padding='same'`` for PyTorch.

TensorFlow (and so Keras) chooses the output size ``ceil(in / stride)`` and pads
``max((out - 1) * stride + k_eff - in, 0)`` pixels in total, where
``k_eff = (k - 1) * dilation + 1``; when that total is odd the extra pixel goes
to the bottom/right. PyTorch's ``padding=1`` on a 3×3 stride-2 conv pads one
pixel on every side instead: the output has the right shape and the wrong
values. See ``tensorflow/python/ops/nn_ops.py`` (``_get_sequence`` / "SAME").
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_Pair = int | tuple[int, ...]


def _pair(v: _Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def same_padding(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """Padding ``(before, after)`` that TensorFlow's 'SAME' applies along one axis.

    >>> same_padding(16, 3, 2)   # model_cnn's second conv: nothing on top, one below
    (0, 1)
    >>> same_padding(32, 4, 2)
    (1, 1)
    """
    if size < 1 or kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(
            "same_padding needs positive sizes. Received: "
            f"size={size}, kernel={kernel}, stride={stride}, dilation={dilation}"
        )
    out = math.ceil(size / stride)
    k_eff = (kernel - 1) * dilation + 1
    total = max((out - 1) * stride + k_eff - size, 0)
    return total // 2, total - total // 2


def pad_same(
    x: torch.Tensor, kernel: _Pair, stride: _Pair = 1, dilation: _Pair = 1, value: float = 0.0
) -> torch.Tensor:
    """Pad an NCHW tensor as TensorFlow's 'SAME' would before a conv or pool."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    top, bottom = same_padding(x.shape[-2], kh, sh, dh)
    left, right = same_padding(x.shape[-1], kw, sw, dw)
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


class PadSame2d(nn.Module):
    """Zero padding for TensorFlow 'SAME', computed from each input's size."""

    def __init__(self, kernel_size: _Pair, stride: _Pair = 1, dilation: _Pair = 1) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.dilation = _pair(dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, self.kernel_size, self.stride, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow 'SAME' padding (mirrors ``keras.layers.Conv2D(padding='same')``).

    The padding is worked out per input size, so any input size, kernel, stride
    and dilation behave as in Keras. Where it comes out symmetric (a 4×4 stride-2
    conv on 32 pixels pads (1, 1)) the conv pads natively, without copying the
    input; otherwise the input is padded explicitly first. The parameters are
    those of ``nn.Conv2d`` (``weight`` is ``(out, in / groups, kh, kw)``), so
    state dicts stay interchangeable.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        dilation: _Pair = 1,
        bias: bool = True,
        *,
        groups: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            in_channels, out_channels, _pair(kernel_size), _pair(stride), padding=0,
            dilation=_pair(dilation), groups=groups, bias=bias, device=device, dtype=dtype,
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        top, bottom = same_padding(x.shape[-2], kh, sh, dh)
        left, right = same_padding(x.shape[-1], kw, sw, dw)
        if top == bottom and left == right:  # torch pads symmetrically itself: no copy
            return F.conv2d(
                x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups
            )
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def create_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: _Pair,
    stride: _Pair = 1,
    padding: str = "valid",
    dilation: _Pair = 1,
    bias: bool = True,
    *,
    groups: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Conv2d:
    """A conv with Keras's ``padding`` semantics ('valid' or 'same').

    'same' with odd kernels at stride 1 pads symmetrically, so torch's own
    ``padding='same'`` is exact there; every other 'same' case is a ``Conv2dSame``.
    ``groups`` as in ``nn.Conv2d`` (Keras's ``groups``; ``in_channels`` for a depthwise conv).
    """
    kw: dict[str, Any] = {"groups": groups, "device": device, "dtype": dtype}
    k, s, d = _pair(kernel_size), _pair(stride), _pair(dilation)
    if padding == "valid":
        return nn.Conv2d(in_channels, out_channels, k, s, 0, d, bias=bias, **kw)
    if padding != "same":
        raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
    if s == (1, 1) and k[0] % 2 == 1 and k[1] % 2 == 1:
        return nn.Conv2d(in_channels, out_channels, k, 1, "same", d, bias=bias, **kw)
    return Conv2dSame(in_channels, out_channels, k, s, d, bias, **kw)
