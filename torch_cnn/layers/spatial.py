"""Keras's shape and resampling layers on torch-layout tensors.

Image maps travel as NCHW tensors (Keras holds them NHWC); every other rank is
kept in Keras's order (see ``torch_cnn.models.graph``). The modules here take
and return tensors in that convention: ``Reshape`` and ``Permute`` work on
Keras's axes, ``FlattenChannelsLast`` flattens in Keras's (H, W, C) order.
``ZeroPadding2D`` needs no module of its own (``nn.ZeroPad2d``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_NCHW_TO_NHWC = (0, 2, 3, 1)
_NHWC_TO_NCHW = (0, 3, 1, 2)


class Crop2d(nn.Module):
    """Mirrors ``keras.layers.Cropping2D``: drop rows and columns at the four edges.

    >>> Crop2d(1, 0, 2, 1)(torch.zeros(1, 3, 8, 8)).shape
    torch.Size([1, 3, 7, 5])
    """

    def __init__(self, top: int, bottom: int, left: int, right: int) -> None:
        super().__init__()
        if min(top, bottom, left, right) < 0:
            raise ValueError(
                "cropping must not be negative. Received: "
                f"top={top}, bottom={bottom}, left={left}, right={right}"
            )
        self.cropping = (top, bottom, left, right)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.cropping
        h, w = x.shape[-2], x.shape[-1]
        if top + bottom >= h or left + right >= w:
            raise ValueError(
                f"cropping (top, bottom, left, right)={self.cropping} leaves nothing of a "
                f"{h}×{w} map; each pair must sum to less than the size"
            )
        return x[..., top : h - bottom, left : w - right]

    def extra_repr(self) -> str:
        top, bottom, left, right = self.cropping
        return f"top={top}, bottom={bottom}, left={left}, right={right}"


def _tf_bilinear_axis(n_in: int, factor: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Source rows, next rows and weights of TensorFlow's half-pixel bilinear resize.

    As ``ResizeBilinear`` (half_pixel_centers) computes them, in float32:
    ``src = (i + 0.5) * (n_in / n_out) - 0.5``, ``lower = max(floor(src), 0)``,
    ``upper = min(ceil(src), n_in - 1)``, weight ``src - floor(src)``.
    """
    scale = torch.tensor(n_in, dtype=torch.float32) / (n_in * factor)  # float32, as TF
    src = (torch.arange(n_in * factor, dtype=torch.float32) + 0.5) * scale - 0.5
    floor = torch.floor(src)
    lower = floor.to(torch.int64).clamp(min=0)
    upper = torch.ceil(src).to(torch.int64).clamp(max=n_in - 1)
    return lower.to(device), upper.to(device), (src - floor).to(device)


def tf_resize_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow's ``resize_bilinear`` (half-pixel centers) by integer factors, bit for bit.

    TensorFlow reads the input as float32, interpolates along W then H as
    ``a + (b - a) * w`` and returns float32, which Keras casts back to the layer's
    dtype: a float64 Keras model upsamples at float32 precision. This function
    does the same arithmetic in the same order, so float64 models match Keras to
    the last bit instead of to 1e-7 (torch's ``F.interpolate`` computes in float64).

    >>> x = torch.tensor([[[[0.0, 1.0]]]])
    >>> tf_resize_bilinear(x, (1, 2))
    tensor([[[[0.0000, 0.2500, 0.7500, 1.0000]]]])
    """
    n, c, h, w = x.shape
    lx, ux, wx = _tf_bilinear_axis(w, size[1], x.device)
    ly, uy, wy = _tf_bilinear_axis(h, size[0], x.device)
    flat = x.to(torch.float32).reshape(n * c * h, w)  # columns gather faster from a 2-D view
    left, right = flat[:, lx], flat[:, ux]
    rows = (left + (right - left) * wx).view(n, c, h, w * size[1])
    top, bottom = rows.index_select(-2, ly), rows.index_select(-2, uy)
    return (top + (bottom - top) * wy[:, None]).to(x.dtype)


class UpSample2d(nn.Module):
    """Mirrors ``keras.layers.UpSampling2D`` (integer factors; 'nearest' or 'bilinear').

    'nearest' repeats each pixel (Keras's ``ops.repeat``), exactly. 'bilinear' is
    TensorFlow's half-pixel resize, ``tf_resize_bilinear``: bit for bit TensorFlow's in
    every dtype (TensorFlow computes in float32 whatever the layer's dtype). torch's
    ``F.interpolate(align_corners=False)`` is 3-5× faster but weights as
    ``w0 * a + w1 * b`` where TF computes ``a + (b - a) * w``: 2e-5 apart on activations
    of size 30, past the float32 parity bar, so it is not used.

    >>> UpSample2d((2, 3))(torch.zeros(1, 4, 5, 5)).shape
    torch.Size([1, 4, 10, 15])
    """

    def __init__(self, size: tuple[int, int] = (2, 2), interpolation: str = "nearest") -> None:
        super().__init__()
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                "interpolation must be 'nearest' or 'bilinear'. "
                f"Received: interpolation={interpolation!r}"
            )
        if min(size) < 1:
            raise ValueError(f"size must be positive. Received: size={size}")
        self.size = (int(size[0]), int(size[1]))
        self.interpolation = interpolation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.size
        if self.interpolation == "nearest":
            n, c, h, w = x.shape
            return (
                x[:, :, :, None, :, None].expand(n, c, h, sh, w, sw).reshape(n, c, h * sh, w * sw)
            )
        return tf_resize_bilinear(x, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}, interpolation={self.interpolation!r}"


class FlattenChannelsLast(nn.Module):
    """``keras.layers.Flatten`` of an NCHW map: features in Keras's (H, W, C) order.

    >>> x = torch.arange(8.0).reshape(1, 2, 2, 2)  # (N, C, H, W)
    >>> FlattenChannelsLast()(x)
    tensor([[0., 4., 1., 5., 2., 6., 3., 7.]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*_NCHW_TO_NHWC).reshape(x.shape[0], -1)


class Reshape(nn.Module):
    """Mirrors ``keras.layers.Reshape``: ``target_shape`` (no batch axis; one -1 allowed)
    applied in Keras's layout.

    An NCHW map input is read as NHWC (``in_map``), and a rank-3 result is returned
    NCHW (``out_map``), so the elements land where Keras puts them.

    >>> x = torch.arange(12.0).reshape(1, 3, 2, 2)  # Keras (2, 2, 3), torch NCHW
    >>> Reshape((4, 3), in_map=True)(x)[0, 0]  # Keras's first pixel: its 3 channels
    tensor([0., 4., 8.])
    """

    def __init__(
        self, target_shape: Sequence[int], *, in_map: bool = False, out_map: bool = False
    ) -> None:
        super().__init__()
        self.target_shape = tuple(int(d) for d in target_shape)
        if out_map and len(self.target_shape) != 3:
            raise ValueError(f"out_map needs a rank-3 target_shape; received {self.target_shape}")
        self.in_map = in_map
        self.out_map = out_map

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_map:
            x = x.permute(*_NCHW_TO_NHWC)
        y = x.reshape(x.shape[0], *self.target_shape)
        if self.out_map:
            y = y.permute(*_NHWC_TO_NCHW)
        return y

    def extra_repr(self) -> str:
        return f"target_shape={self.target_shape}, in_map={self.in_map}, out_map={self.out_map}"


class Permute(nn.Module):
    """A permutation of torch dims (batch first): ``keras.layers.Permute`` once the layout
    conversions on either side are folded in (see the converter).

    >>> Permute((0, 2, 1))(torch.zeros(2, 3, 5)).shape
    torch.Size([2, 5, 3])
    """

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        dims = tuple(int(d) for d in dims)
        if sorted(dims) != list(range(len(dims))) or (dims and dims[0] != 0):
            raise ValueError(
                f"dims must permute 0..{len(dims) - 1} and keep the batch dim first. "
                f"Received: dims={dims}"
            )
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"
