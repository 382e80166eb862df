"""Deliberately wrong converters, each making one mistake converters are known to make.

The zoo tests swap one in for the real converter (``test_zoo.test_a_wrong_converter_is_caught``)
and require the parity comparison to fail: a check that cannot catch these would pass them.
Each wraps the real converter, captured when this module is imported, and changes one thing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn.convert import registry
from torch_cnn.convert.registry import BuildContext, Converted, KerasCall
from torch_cnn.layers.padding import pad_same
from torch_cnn.layers.spec import TensorSpec

Builder = Callable[[KerasCall, Sequence[TensorSpec], BuildContext], Converted]
REAL: dict[str, Builder] = {
    cls: registry._LAYERS[cls].build
    for cls in ("LeakyReLU", "BatchNormalization", "AveragePooling2D", "Concatenate", "Dense",
                "Reshape", "DepthwiseConv2D")
}  # fmt: skip


def leaky_relu_torch_slope(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["LeakyReLU"](call, inputs, ctx)
    return dataclasses.replace(out, module=nn.LeakyReLU(0.01), activation="linear")


def batch_norm_torch_eps(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["BatchNormalization"](call, inputs, ctx)
    out.module.eps = 1e-5  # type: ignore[assignment]
    return out


class _AvgCountingPadding(nn.Module):
    def __init__(self, k: tuple[int, int], s: tuple[int, int]) -> None:
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(pad_same(x, self.k, self.s), self.k, self.s)  # zeros in the mean


def avg_pool_counting_padding(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["AveragePooling2D"](call, inputs, ctx)
    if call.config.get("padding") != "same":
        return out
    k = registry.pair(call, "pool_size", 2)
    s = registry.pair(call, "strides", None) if call.config.get("strides") else k
    return dataclasses.replace(out, module=_AvgCountingPadding(k, s))


class _Cat(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)


def concatenate_keras_axis_as_torch_dim(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["Concatenate"](call, inputs, ctx)
    return dataclasses.replace(out, module=_Cat(int(call.config.get("axis", -1))))


class _LinearOnLastTorchDim(nn.Linear):
    """torch's Linear as it is, on a map: it acts on W, the last torch dim, not the channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def dense_on_the_last_torch_dim(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["Dense"](call, inputs, ctx)
    if not inputs[0].is_map:
        return out
    linear = out.module
    assert isinstance(linear, nn.Linear)
    wrong = _LinearOnLastTorchDim(linear.in_features, linear.out_features, linear.bias is not None)
    return dataclasses.replace(out, module=wrong)


class _ReshapeNCHW(nn.Module):
    def __init__(self, shape: tuple[int | None, ...]) -> None:
        super().__init__()
        self.shape = shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def reshape_in_nchw_order(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    out = REAL["Reshape"](call, inputs, ctx)
    return dataclasses.replace(out, module=_ReshapeNCHW(out.output.torch_shape))


def depthwise_kernel_mult_major(
    call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext
) -> Converted:
    """The depthwise kernel flattened (mult, in) instead of (in, mult)."""
    out = REAL["DepthwiseConv2D"](call, inputs, ctx)

    def wrong(k: np.ndarray) -> np.ndarray:
        kh, kw, c, m = k.shape
        return k.transpose(0, 1, 3, 2).reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]

    rows = list(out.weights)
    rows[0] = dataclasses.replace(rows[0], to_torch=wrong)
    return dataclasses.replace(out, weights=tuple(rows))


WRONG: dict[str, Builder] = {
    "LeakyReLU": leaky_relu_torch_slope,
    "BatchNormalization": batch_norm_torch_eps,
    "AveragePooling2D": avg_pool_counting_padding,
    "Concatenate": concatenate_keras_axis_as_torch_dim,
    "Dense": dense_on_the_last_torch_dim,
    "Reshape": reshape_in_nchw_order,
    "DepthwiseConv2D": depthwise_kernel_mult_major,
}
