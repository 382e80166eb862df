"""Correctly rounded square roots and TensorFlow's scalar casts, for bit-exact optimizers.

torch's CPU ``sqrt`` (MKL's vectorised root in its high-accuracy mode) is within an
ulp but not correctly rounded: with torch 2.13 on an AVX-512 CPU, 0.1% to 20% of
float32 and float64 inputs, depending on their range, came out one ulp off.
TensorFlow's root is correctly rounded, and one ulp in ``sqrt(v)`` parts an Adam
trajectory from Keras's within a few steps. Two routes to the exact root:

- ``ieee_sqrt``: the fastest exact root on each device. On the CPU, NumPy's (the C
  library's, exact) on the same memory; on CUDA, torch's own (IEEE 754 correctly
  rounded there); elsewhere ``device_ieee_sqrt``.
- ``device_ieee_sqrt``: torch operations only, so it runs on any device, with no
  host round trip. float32: the root taken in float64 and rounded to float32. float64
  (and float32 where float64 is missing, as on MPS): torch's root ``r``, then one exact
  correction step (Tuckerman's test, ``_tuckerman``).

Why the float64 route is exact for float32 even with a float64 root that is itself
an ulp off: for a float32 ``x`` and a float32 midpoint ``m`` (a 25-bit number),
``x - m²`` is a non-zero multiple of ``2^(2e-48)`` when ``m`` is in ``[2^e, 2^(e+1))``,
so ``|sqrt(x) - m| ≥ 2^(e-50)``: four float64 ulps. A float64 root within an ulp of
``sqrt(x)`` lies on the same side of every midpoint, and rounds to the right float32.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np
import torch

# The dtype TensorFlow gives a Python float: ``ops.cast(self.beta_1, variable.dtype)``
# is ``tf.cast(0.9, dtype)``, which makes a float32 tensor first, whatever Keras's floatx.
TF_PYTHON_FLOAT_DTYPE = torch.float32
# Dtypes whose scalar pow and sqrt NumPy computes with the C library, as TensorFlow does.
NUMPY_DTYPES: dict[torch.dtype, type[np.floating[Any]]] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
}


class _Format:
    """What Tuckerman's test needs to know about one binary format."""

    def __init__(self, bits: torch.dtype, mantissa: int, bias: int, split: float) -> None:
        self.bits = bits  # the integer dtype of the same width
        self.mantissa = mantissa  # stored significand bits
        self.bias = bias  # exponent bias
        self.split = split  # Veltkamp's constant 2**ceil(p/2) + 1


_FORMATS = {
    torch.float64: _Format(torch.int64, 52, 1023, 2.0**27 + 1),
    torch.float32: _Format(torch.int32, 23, 127, 2.0**12 + 1),
}


_F = TypeVar("_F", bound=Callable[..., Any])


def outside_compiled_graphs(fn: _F) -> _F:
    """``torch.compiler.disable``, applied only when a compiler traces ``fn``: importing
    dynamo to decorate at import time would cost every ``import torch_cnn`` about a second."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" in sys.modules and torch.compiler.is_compiling():
            return _disabled(fn)(*args, **kwargs)
        return fn(*args, **kwargs)

    return cast(_F, wrapper)


@functools.cache
def _disabled(fn: Callable[..., Any]) -> Callable[..., Any]:
    result: Callable[..., Any] = torch.compiler.disable(fn)  # type: ignore[no-untyped-call]
    return result


@outside_compiled_graphs  # dynamo would turn np.sqrt into torch.sqrt
def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` correctly rounded, as TensorFlow's (and IEEE 754's) square root.

    On the CPU the root of a float32 or float64 tensor is NumPy's: exact, and faster
    there than ``device_ieee_sqrt`` (for 225,034 values on a 2-core AVX-512 VM, float32:
    0.07 ms against 0.13 to 0.5 ms through float64; float64: 0.27 ms against some 25 ms
    for the forty-odd elementwise operations of the correction step). On CUDA torch's
    ``sqrt`` is IEEE-exact and is used as it is. Anything else goes through ``device_ieee_sqrt``. The result carries no gradient
    (an optimizer needs none); ``torch.compile`` leaves this function out of its graphs.

    >>> ieee_sqrt(torch.tensor([4.0, 2.0, 0.0]))
    tensor([2.0000, 1.4142, 0.0000])
    """
    if x.device.type == "cuda":
        return x.detach().sqrt()
    if x.device.type == "cpu" and x.dtype in NUMPY_DTYPES:
        a = x.detach().numpy()
        out = np.empty_like(a)  # keeps a's strides; np.sqrt of a 0-d array would return a scalar
        with np.errstate(invalid="ignore"):  # sqrt(-1) is NaN, as in torch
            np.sqrt(a, out=out)
        return torch.from_numpy(out)
    root: torch.Tensor = device_ieee_sqrt(x)
    return root


def ieee_sqrt_all(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``ieee_sqrt`` of each tensor; one multi-tensor kernel where torch's root is exact (CUDA)."""
    if tensors and all(t.device.type == "cuda" for t in tensors):
        return list(torch._foreach_sqrt(list(tensors)))
    return [ieee_sqrt(t) for t in tensors]


@outside_compiled_graphs  # a compiler may fuse the exact steps into FMAs
def device_ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` correctly rounded, from torch operations only (any device, no host copy).

    float32: computed in float64, rounded once (see the module docstring; on a device
    without float64, Tuckerman's correction in float32). float64: torch's ``sqrt``
    nudged by Tuckerman's exact test (torch's root must be within one ulp, as MKL's,
    SLEEF's and CUDA's are). float16 and bfloat16: the exact float32 root rounded again,
    which is innocuous (24 ≥ 2·11 + 2 bits).

    >>> device_ieee_sqrt(torch.tensor([4.0, 2.0, 0.0], dtype=torch.float64))
    tensor([2.0000, 1.4142, 0.0000], dtype=torch.float64)
    """
    x = x.detach()
    if x.dtype == torch.float64:
        return _tuckerman(x)
    if x.dtype == torch.float32:
        if x.device.type == "mps":  # no float64 there
            return _tuckerman(x)
        return x.to(torch.float64).sqrt().to(torch.float32)
    if x.dtype in (torch.float16, torch.bfloat16):
        root: torch.Tensor = device_ieee_sqrt(x.float())
        return root.to(x.dtype)
    raise TypeError(f"device_ieee_sqrt takes a floating tensor. Received: dtype={x.dtype}")


def _two_product(
    a: torch.Tensor, b: torch.Tensor, split: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``a·b = hi + lo`` exactly (Dekker), from separate multiplies and adds."""
    hi = a * b
    c = a * split
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = b * split
    b_hi = c - (c - b)
    b_lo = b - b_hi
    lo = ((a_hi * b_hi - hi) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return hi, lo


def _exceeds(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, split: float) -> torch.Tensor:
    """Whether ``x > a·b`` exactly, for ``a·b`` within a few ulps of ``x`` (Sterbenz: x - hi is exact)."""
    hi, lo = _two_product(a, b, split)
    return (x - hi) > lo


def _tuckerman(x: torch.Tensor) -> torch.Tensor:
    """Correctly rounded sqrt of a float32/float64 tensor from torch's root, within one ulp.

    With ``x = s·4^k``, ``s`` in [1, 4), the root is ``sqrt(s)·2^k`` exactly, and every
    product below lies in [1, 4]: Dekker's product is exact there. For the root ``r`` of
    ``s`` and its neighbours ``r⁻ < r < r⁺``, ``sqrt(s)`` lies above the midpoint
    ``m = (r + r⁺)/2`` iff ``s > m² = r·r⁺ + (r⁺ - r)²/4``; ``s - r·r⁺`` is a multiple of
    ``ulp(r)²``, four times ``(r⁺ - r)²/4``, so that is ``s > r·r⁺``. Likewise the root
    is below ``(r⁻ + r)/2`` iff ``s ≤ r⁻·r``. Zeros, infinities, NaNs and negative
    inputs keep torch's answer, which IEEE 754 fixes exactly.
    """
    fmt = _FORMATS[x.dtype]
    mant, exp = torch.frexp(x)  # x = mant·2^exp, mant in [0.5, 1)
    odd = (exp & 1).bool()
    s = torch.where(odd, mant * 2, mant * 4)  # [1, 2) or [2, 4)
    k = torch.where(odd, exp - 1, exp - 2) >> 1
    r = s.sqrt()
    up = torch.nextafter(r, torch.full_like(r, float("inf")))
    down = torch.nextafter(r, torch.zeros_like(r))
    go_up = _exceeds(s, r, up, fmt.split)
    go_down = ~_exceeds(s, down, r, fmt.split)
    r = torch.where(go_up, up, torch.where(go_down, down, r))
    # 2^k from its bits: exact, where ldexp's pow(2, k) need not be.
    scale = ((k.to(fmt.bits) + fmt.bias) << fmt.mantissa).view(x.dtype)
    finite_positive = (x > 0) & (x < float("inf"))
    return torch.where(finite_positive, r * scale, x.sqrt())


def as_dtype(value: float, dtype: torch.dtype) -> float:
    """``value`` rounded to ``dtype`` (to nearest), as a Python float that ``dtype`` holds exactly.

    What TensorFlow does with a Python float meeting a tensor (``ops.multiply(m, 0.1)``,
    ``v + 1e-7``): ``tf.convert_to_tensor(value, dtype=tensor.dtype)``.
    """
    np_dtype = NUMPY_DTYPES.get(dtype)
    if np_dtype is not None:
        return float(np_dtype(value))
    return float(torch.tensor(value, dtype=torch.float64).to(dtype).item())


def tf_cast(value: float, dtype: torch.dtype) -> float:
    """``tf.cast(value, dtype)`` of a Python float: rounded to float32 first, then to ``dtype``."""
    return as_dtype(as_dtype(value, TF_PYTHON_FLOAT_DTYPE), dtype)
