"""Keras's depthwise-separable and transposed convolutions as native torch modules.

``Conv2D`` and ``DepthwiseConv2D`` need nothing new: ``create_conv2d`` (with
``groups=in_channels`` for a depthwise conv) reproduces them, 'same' padding
included. This module adds:

* ``SeparableConv2d``: ``keras.layers.SeparableConv2D``, a depthwise conv then a
  1×1 conv, as two ``nn.Conv2d`` children (``depthwise``, ``pointwise``).
* ``create_conv_transpose2d`` / ``ConvTranspose2dSame``: ``keras.layers.Conv2DTranspose``
  with TensorFlow's output size and placement. TensorFlow computes a transposed conv
  as the gradient of a forward conv whose *input* is the transposed conv's output
  (``tf.nn.conv_transpose`` → ``Conv2DBackpropInput``): 'same' pads that forward conv
  the usual TF way, ``total // 2`` before and the odd pixel after. torch's
  ``ConvTranspose2d`` crops ``padding`` pixels from both ends and adds
  ``output_padding`` at the end; where TensorFlow crops one pixel more at the end than
  at the start, ``ConvTranspose2dSame`` crops that pixel explicitly. (Keras's own torch
  backend got this placement wrong until keras-team/keras#22876; the numbers here are
  TensorFlow's.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn.layers.padding import create_conv2d

_Pair = int | tuple[int, ...]


def _pair(v: _Pair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


class SeparableConv2d(nn.Module):
    """Mirrors ``keras.layers.SeparableConv2D``: a depthwise conv, then a pointwise 1×1 conv.

    ``depthwise`` is an ``nn.Conv2d`` with ``groups=in_channels`` and
    ``in_channels * depth_multiplier`` outputs, no bias (output channel
    ``c * depth_multiplier + m`` is input channel ``c``'s ``m``-th filter, as in
    Keras); ``pointwise`` is a 1×1 ``nn.Conv2d`` carrying the layer's bias. Padding
    ('valid' or TensorFlow's 'same'), strides and dilation apply to the depthwise step
    (keras/src/layers/convolutional/base_separable_conv.py; TensorFlow's
    ``separable_conv2d``).

    >>> conv = SeparableConv2d(3, 8, 3, stride=2, padding="same", depth_multiplier=2)
    >>> conv(torch.zeros(1, 3, 9, 9)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        padding: str = "valid",
        dilation: _Pair = 1,
        depth_multiplier: int = 1,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        mid = in_channels * depth_multiplier
        self.depthwise = create_conv2d(
            in_channels, mid, kernel_size, stride, padding, dilation, bias=False,
            groups=in_channels, **kw,
        )  # fmt: skip
        self.pointwise = nn.Conv2d(mid, out_channels, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))  # type: ignore[no-any-return]


def conv_transpose_padding(
    kernel: int,
    stride: int = 1,
    padding: str = "valid",
    output_padding: int | None = None,
    dilation: int = 1,
) -> tuple[int, int, int]:
    """TensorFlow's transposed-conv placement along one axis as torch arguments.

    Returns ``(padding, output_padding, crop_end)``: ``ConvTranspose2d``'s padding
    and output padding, and the pixels to drop at the end (bottom/right) after it.
    The output size is ``(in - 1) * stride + k_eff + output_padding`` for 'valid'
    (``output_padding=None`` means ``max(k_eff, stride) - k_eff``), ``in * stride``
    for 'same' with ``output_padding=None``, and ``(in - 1) * stride + k_eff % 2 +
    output_padding`` otherwise (keras/src/backend/common/backend_utils.py,
    ``_get_output_shape_given_tf_padding``), where ``k_eff = (kernel - 1) * dilation + 1``.

    >>> conv_transpose_padding(3, 2, "same")  # TF crops 0 pixels before, 1 after
    (0, 0, 1)
    >>> conv_transpose_padding(4, 2, "same")  # 1 and 1: torch's own padding=1
    (1, 0, 0)
    >>> conv_transpose_padding(2, 3, "same")  # nothing to crop; one more row of bias
    (0, 1, 0)
    """
    if kernel < 1 or stride < 1 or dilation < 1:
        raise ValueError(
            "conv_transpose_padding needs positive sizes. Received: "
            f"kernel={kernel}, stride={stride}, dilation={dilation}"
        )
    if output_padding is not None and not 0 <= output_padding < stride:
        raise ValueError(
            "output_padding must be at least 0 and less than the stride. Received: "
            f"output_padding={output_padding}, stride={stride}"
        )
    k_eff = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(k_eff, stride) - k_eff if output_padding is None else output_padding
        return 0, extra, 0
    if padding != "same":
        raise ValueError(f"padding must be 'valid' or 'same'. Received: padding={padding!r}")
    # The output is (in - 1) * stride + tail; TF pads the forward conv (output → input)
    # by max(k_eff - tail, 0) pixels, total // 2 of them before.
    tail = stride if output_padding is None else k_eff % 2 + output_padding
    if tail == 0:
        raise ValueError(
            f"TensorFlow cannot compute a 'same' transposed conv with an even kernel "
            f"(effective size {k_eff}) and output_padding=0: its output would have "
            "(in - 1) * stride pixels, from which a 'same' conv gives in - 1, not in"
        )
    total = max(k_eff - tail, 0)
    before = total // 2
    # torch: full = (in - 1) * stride + k_eff; out = full - 2 * padding + output_padding.
    torch_output_padding = tail - k_eff + 2 * before
    if torch_output_padding >= 0:
        return before, torch_output_padding, 0
    return before, 0, -torch_output_padding


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with TensorFlow's 'same' placement (``keras.layers.Conv2DTranspose``).

    torch crops ``padding`` pixels from both ends; TensorFlow puts the odd pixel at
    the end, so this module crops it after the native transposed conv. The
    parameters are those of ``nn.ConvTranspose2d`` (``weight`` is ``(in, out, kh, kw)``).
    Build it with ``create_conv_transpose2d``, which returns a plain
    ``nn.ConvTranspose2d`` wherever torch's symmetric padding is already exact.

    >>> up = ConvTranspose2dSame(4, 2, 3, stride=2)
    >>> up(torch.zeros(1, 4, 5, 5)).shape  # in * stride, as Keras
    torch.Size([1, 2, 10, 10])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _Pair,
        stride: _Pair = 1,
        output_padding: _Pair | None = None,
        dilation: _Pair = 1,
        bias: bool = True,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(dilation)
        oph, opw = (None, None) if output_padding is None else _pair(output_padding)
        ph, oh, ch = conv_transpose_padding(kh, sh, "same", oph, dh)
        pw, ow, cw = conv_transpose_padding(kw, sw, "same", opw, dw)
        super().__init__(
            in_channels, out_channels, (kh, kw), (sh, sw), padding=(ph, pw),
            output_padding=(oh, ow), bias=bias, dilation=(dh, dw), device=device, dtype=dtype,
        )  # fmt: skip
        self.crop = (ch, cw)  # pixels dropped at the bottom and on the right

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if output_size is not None:
            raise ValueError("ConvTranspose2dSame sets its own output size; pass no output_size")
        y = F.conv_transpose2d(
            input, self.weight, self.bias, self.stride, self.padding,  # type: ignore[arg-type]
            self.output_padding, self.groups, self.dilation,
        )  # fmt: skip
        ch, cw = self.crop
        return y[..., : y.shape[-2] - ch, : y.shape[-1] - cw]

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[no-untyped-call]
        return f"{base}, padding='same', crop={self.crop}"


def create_conv_transpose2d(
    in_channels: int,
    out_channels: int,
    kernel_size: _Pair,
    stride: _Pair = 1,
    padding: str = "valid",
    output_padding: _Pair | None = None,
    dilation: _Pair = 1,
    bias: bool = True,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.ConvTranspose2d:
    """A transposed conv with Keras's ``padding`` and ``output_padding`` (TensorFlow's numbers).

    A plain ``nn.ConvTranspose2d`` where torch's symmetric padding places the output
    as TensorFlow does ('valid'; 'same' with an even total crop), else a
    ``ConvTranspose2dSame``.

    >>> create_conv_transpose2d(4, 2, 4, stride=2, padding="same")
    ConvTranspose2d(4, 2, kernel_size=(4, 4), stride=(2, 2), padding=(1, 1))
    """
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel_size), _pair(stride), _pair(dilation)
    oph, opw = (None, None) if output_padding is None else _pair(output_padding)
    ph, oh, ch = conv_transpose_padding(kh, sh, padding, oph, dh)
    pw, ow, cw = conv_transpose_padding(kw, sw, padding, opw, dw)
    kw_: dict[str, Any] = {"bias": bias, "device": device, "dtype": dtype}
    if ch or cw:
        return ConvTranspose2dSame(
            in_channels, out_channels, (kh, kw), (sh, sw), output_padding, (dh, dw), **kw_
        )
    return nn.ConvTranspose2d(
        in_channels, out_channels, (kh, kw), (sh, sw), padding=(ph, pw),
        output_padding=(oh, ow), dilation=(dh, dw), **kw_,
    )  # fmt: skip
