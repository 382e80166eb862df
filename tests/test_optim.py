"""torch_cnn.optim's exact arithmetic: the pieces KerasAdam needs bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_cnn.optim import ieee_sqrt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ieee_sqrt_is_correctly_rounded(dtype: torch.dtype) -> None:
    """Every root equals the C library's (IEEE 754, correctly rounded), as TensorFlow's does."""
    g = torch.Generator().manual_seed(0)
    # v of Adam spans many decades; include 0, subnormal-adjacent and large values.
    x = torch.rand(200_000, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -30, 10, (200_000,), generator=g
    )
    x = torch.cat([x, torch.tensor([0.0, 1.0, 4.0, 2.0])]).to(dtype)
    got = ieee_sqrt(x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.numpy(), np.sqrt(x.numpy()))
    # Rounding a float64 root to float32 is correctly rounded too (53 ≥ 2·24 + 2 bits).
    if dtype == torch.float32:
        exact = np.sqrt(x.numpy().astype(np.float64)).astype(np.float32)
        np.testing.assert_array_equal(got.numpy(), exact)


def test_ieee_sqrt_keeps_layout_and_low_precision_dtypes() -> None:
    x = torch.rand(4, 3, 5, 5).to(memory_format=torch.channels_last)
    got = ieee_sqrt(x)
    assert got.stride() == x.stride()
    np.testing.assert_array_equal(got.numpy(), np.sqrt(x.numpy()))
    half = ieee_sqrt(torch.tensor([4.0, 2.0, 0.25], dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert half.tolist() == [2.0, torch.tensor(2.0**0.5, dtype=torch.bfloat16).item(), 0.5]
