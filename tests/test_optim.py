"""torch_cnn.optim's exact arithmetic: the pieces KerasAdam needs bit for bit."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest
import torch

from torch_cnn.optim import ieee_sqrt


def _correctly_rounded(x: float, root: np.floating[Any]) -> bool:
    """Whether ``root`` is sqrt(x) rounded to nearest in root's dtype, in exact arithmetic:
    x lies between the squares of the midpoints from root to its two neighbours."""
    below = np.nextafter(root, root.dtype.type(-np.inf))
    above = np.nextafter(root, root.dtype.type(np.inf))
    r = Fraction(float(root))
    lo, hi = (r + Fraction(float(below))) / 2, (r + Fraction(float(above))) / 2
    return lo * lo <= Fraction(x) <= hi * hi


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ieee_sqrt_is_correctly_rounded(dtype: torch.dtype) -> None:
    """Checked in exact rational arithmetic, independently of any library's sqrt."""
    g = torch.Generator().manual_seed(0)
    # Adam's v spans many decades; include exact squares.
    x = torch.rand(3000, generator=g, dtype=torch.float64) * 10.0 ** torch.randint(
        -30, 10, (3000,), generator=g
    )
    x = torch.cat([x, torch.tensor([1.0, 4.0, 2.0, 0.25])]).to(dtype)
    got = ieee_sqrt(x)
    assert got.dtype == dtype
    wrong = [
        (float(v), float(r))
        for v, r in zip(x.numpy(), got.numpy(), strict=True)
        if not _correctly_rounded(float(v), r)
    ]
    assert wrong == [], wrong[:5]
    # And torch's own CPU sqrt, for the record of why ieee_sqrt exists: often an ulp off.
    plain = x.sqrt().numpy()
    off = sum(not _correctly_rounded(float(v), r) for v, r in zip(x.numpy(), plain, strict=True))
    print(f"{dtype}: torch.sqrt not correctly rounded for {off} of {len(x)} inputs")
    assert ieee_sqrt(torch.tensor([0.0], dtype=dtype)).item() == 0.0


def test_ieee_sqrt_keeps_layout_and_low_precision_dtypes() -> None:
    x = torch.rand(4, 3, 5, 5).to(memory_format=torch.channels_last)
    got = ieee_sqrt(x)
    assert got.stride() == x.stride()
    np.testing.assert_array_equal(got.numpy(), np.sqrt(x.numpy()))
    half = ieee_sqrt(torch.tensor([4.0, 2.0, 0.25], dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert half.tolist() == [2.0, torch.tensor(2.0**0.5, dtype=torch.bfloat16).item(), 0.5]
