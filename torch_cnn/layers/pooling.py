"""Keras's pooling layers as torch pooling modules.

``MaxPool2dSame`` / ``AvgPool2dSame`` reproduce TensorFlow's 'SAME' pooling (the odd
padding pixel after, padded cells neither selected nor counted) and ``GlobalPool2d``
the global poolings. ``MaxPool2d`` is Keras's plain ``MaxPooling2D`` (pool = stride,
'valid') as torch's max-pool, faster on the CPU.

On the CPU, torch's ``max_pool2d`` over a contiguous NCHW tensor is slow: with torch 2.13
on a 2-core CPU it took 25 ms for a (256, 32, 30, 30) batch, 36% of ``model_cifar10``'s
inference, where the elementwise maximum of the window's k² strided views takes 2.7 ms.
Over a channels_last tensor (the layout float32 models compute in by default) torch's own
is fast, 2.8 ms for the same batch, and the strided maximum faster still (1.9 ms). So
without autograd (inference, evaluation) ``MaxPool2d`` computes that maximum for
non-overlapping windows (kernel = stride, no padding, no dilation, floor mode) in either
layout, the output in the input's layout: the values of ``F.max_pool2d``, bit for bit, and
NaN wherever it has NaN (a window holding NaNs of both signs may give the other sign).
When a gradient is needed it calls ``F.max_pool2d``, whose indices make the backward pass
cheap (a hand-written backward of the strided maximum cost more than it saved; in
channels_last the pooling with indices is itself fast). Anything else (overlapping
windows, CUDA, other strides) goes to ``F.max_pool2d`` too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn.layers.padding import same_padding


def _windows(x: torch.Tensor, k: int) -> list[torch.Tensor]:
    """The k² strided views of ``x`` (N, C, H, W), one per window offset, in row-major order."""
    h, w = x.shape[-2] // k * k, x.shape[-1] // k * k  # floor: the remainder is dropped
    return [x[..., i:h:k, j:w:k] for i in range(k) for j in range(k)]


def _strided_max_pays(x: torch.Tensor) -> bool:
    """Whether the strided maximum beats ``F.max_pool2d`` on ``x``: inference on the CPU, on a
    dense NCHW or channels_last tensor."""
    return (
        not (x.requires_grad and torch.is_grad_enabled())  # training: torch's, with indices
        # Compiled (torch.compile): Inductor fuses F.max_pool2d itself, and an ``out=`` in
        # channels_last would break the graph. Traced (torch.jit.trace): one op, the same
        # whether the trace runs with gradients or not (its check runs without).
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()  # type: ignore[attr-defined, no-untyped-call]
        and x.device.type == "cpu"
        and x.dim() == 4
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        and x.is_floating_point()
    )


def max_pool2d(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size)`` (stride = kernel, no padding), bit for bit.

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool2d(x, 2)
    tensor([[[[ 5.,  7.],
              [13., 15.]]]])
    """
    if not (_strided_max_pays(x) and min(x.shape[-2:]) >= kernel_size):
        return F.max_pool2d(x, kernel_size)
    views = _windows(x, kernel_size)
    if len(views) == 1:  # a 1×1 window: the input itself, as a new tensor in its layout
        return views[0].clone()
    out = torch.maximum(views[0], views[1])  # a new tensor in x's layout (NCHW or NHWC)
    for v in views[2:]:
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


def _same_pool_padding(size: int, kernel: int, stride: int) -> tuple[int, bool]:
    """torch's padding for TensorFlow's 'SAME' pooling along one axis, and whether to drop
    the first output.

    TF pads ``total // 2`` before and the odd pixel after (``same_padding``); a padded
    cell is never selected (max) and never counted (average). torch pads symmetrically
    and, in ceil mode, lets the last window run past the end the same way. With a
    stride of 1 ceil mode adds nothing, so an odd total pads one more on both sides
    and the first output (a window starting one pixel early) is dropped.
    """
    before, after = same_padding(size, kernel, stride)
    if before == after or stride > 1:
        return before, False
    return before + 1, True


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TensorFlow 'SAME' padding (``keras.layers.MaxPooling2D(padding='same')``).

    Worked out per input size: torch's own padding and ceil mode (padded cells are never
    the maximum, as TF's ``-inf`` padding), with no copy of the input. Where the windows do
    not overlap (pool = stride, Keras's default) inference on the CPU runs the fast
    ``max_pool2d`` above instead, on the input padded with ``-inf`` where it needs padding
    (a 15×15 map: 2 ms for a (256, 32) batch where ``F.max_pool2d`` took 44 ms).

    >>> pool = MaxPool2dSame(2)
    >>> pool(torch.arange(25.0).reshape(1, 1, 5, 5))  # ceil(5 / 2) = 3; the last row and column alone
    tensor([[[[ 6.,  8.,  9.],
              [16., 18., 19.],
              [21., 23., 24.]]]])
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        k = _pair2(kernel_size)
        super().__init__(k, k if stride is None else _pair2(stride))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride  # type: ignore[misc]
        h, w = input.shape[-2], input.shape[-1]
        if kh == kw == sh == sw:
            if not (h % kh or w % kw):  # the windows tile the input: nothing to pad
                return max_pool2d(input, kh)
            if _strided_max_pays(input):
                top, bottom = same_padding(h, kh, sh)
                left, right = same_padding(w, kw, sw)
                padded = F.pad(input, (left, right, top, bottom), value=float("-inf"))
                return max_pool2d(padded, kh)
        ph, drop_h = _same_pool_padding(h, kh, sh)
        pw, drop_w = _same_pool_padding(w, kw, sw)
        y = F.max_pool2d(input, (kh, kw), (sh, sw), (ph, pw), ceil_mode=True)
        return y[..., int(drop_h) :, int(drop_w) :]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class AvgPool2dSame(nn.AvgPool2d):
    """``nn.AvgPool2d`` with TensorFlow 'SAME' padding (``keras.layers.AveragePooling2D(padding='same')``).

    TF averages over the cells inside the image only. torch's ``count_include_pad=False``
    does that for its symmetric padding and for the cells ceil mode adds at the end, so
    TF's asymmetric padding needs no copy either (see ``_same_pool_padding``).

    >>> pool = AvgPool2dSame(2)
    >>> pool(torch.ones(1, 1, 3, 3))  # the last row and column average one or two cells
    tensor([[[[1., 1.],
              [1., 1.]]]])
    """

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        k = _pair2(kernel_size)
        super().__init__(k, k if stride is None else _pair2(stride), count_include_pad=False)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride  # type: ignore[misc]
        ph, drop_h = _same_pool_padding(input.shape[-2], kh, sh)
        pw, drop_w = _same_pool_padding(input.shape[-1], kw, sw)
        y = F.avg_pool2d(
            input, (kh, kw), (sh, sw), (ph, pw), ceil_mode=True, count_include_pad=False
        )
        return y[..., int(drop_h) :, int(drop_w) :]

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding='same'"


class GlobalPool2d(nn.Module):
    """Keras's ``GlobalAveragePooling2D`` / ``GlobalMaxPooling2D`` on NCHW maps.

    ``keepdims=False`` returns ``(N, C)``; ``keepdims=True`` returns ``(N, C, 1, 1)``
    (Keras's ``(N, 1, 1, C)`` in torch's layout).
    (keras/src/layers/pooling/global_average_pooling2d.py: ``ops.mean`` over H and W.)

    >>> GlobalPool2d("avg")(torch.ones(2, 3, 4, 5)).shape
    torch.Size([2, 3])
    """

    def __init__(self, pool_type: str = "avg", keepdims: bool = False) -> None:
        super().__init__()
        if pool_type not in ("avg", "max"):
            raise ValueError(f"pool_type must be 'avg' or 'max'. Received: pool_type={pool_type!r}")
        self.pool_type = pool_type
        self.keepdims = keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return x.mean((-2, -1), keepdim=self.keepdims)
        return x.amax((-2, -1), keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}, keepdims={self.keepdims}"


def _pair2(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
