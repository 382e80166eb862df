"""TensorFlow 'same' padding: the torch layer against Keras over a grid of sizes, kernels, strides, dilations."""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np
import pytest
import torch

from torch_cnn.layers import Conv2dSame, create_conv2d, same_padding

SIZES = (5, 6, 7, 8, 15, 16, 32)  # odd and even
# TensorFlow rejects strides > 1 together with dilation > 1.
GRID = [(k, s, 1) for k in range(1, 6) for s in (1, 2, 3)] + [
    (k, 1, d) for k in range(1, 6) for d in (2, 3)
]


def _reference_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's rule, written out independently of torch_cnn."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


@pytest.mark.parametrize(("k", "s", "d"), GRID)
def test_same_padding_amounts(k: int, s: int, d: int) -> None:
    for size in SIZES:
        assert same_padding(size, k, s, d) == _reference_padding(size, k, s, d)


def test_model_cnn_second_conv_pads_bottom_right() -> None:
    assert same_padding(16, 3, 2) == (0, 1)  # torch's padding=1 would give (1, 1)


@pytest.mark.parametrize("explicit", [False, True], ids=["create_conv2d", "Conv2dSame"])
@pytest.mark.parametrize(("k", "s", "d"), GRID)
def test_conv_same_matches_keras(
    keras: ModuleType, keras_ref: ModuleType, k: int, s: int, d: int, explicit: bool
) -> None:
    rng = np.random.default_rng(k * 100 + s * 10 + d)
    cin, cout = 2, 3
    kernel = rng.standard_normal((k, k, cin, cout))
    bias = rng.standard_normal(cout)
    if explicit:
        conv = Conv2dSame(cin, cout, k, s, d, dtype=torch.float64)
    else:
        conv = create_conv2d(cin, cout, k, s, "same", d, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1)))
        assert conv.bias is not None
        conv.bias.copy_(torch.from_numpy(bias))
    with keras_ref.dtype_scope("float64"):
        layer = keras.layers.Conv2D(cout, k, strides=s, padding="same", dilation_rate=d)
        layer.build((None, None, None, cin))
        layer.set_weights([kernel, bias])
        for size in SIZES:
            for h, w in ((size, size), (size, size + 1)):
                x = rng.random((2, h, w, cin))
                expected = np.asarray(layer(x))
                with torch.no_grad():
                    got = conv(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
                assert got.shape == expected.shape, (size, got.shape, expected.shape)
                assert np.abs(got - expected).max() <= 1e-12, (h, w)
