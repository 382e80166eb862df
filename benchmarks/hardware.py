"""What the benchmark ran on: the CPU's description and estimated peak, the measured matmul
rate, the device and versions, and the model's FLOPs that the rates are set against."""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torch_cnn.env import describe_device
from torch_cnn.env import versions as torch_versions


def sync(device: torch.device) -> None:
    """Wait for ``device`` (a no-op on the CPU, whose work is done when a call returns)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_flops(model: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32)) -> int:
    """FLOPs of one image's forward pass: 2 per multiply-add of every conv and dense layer.

    Worked out from each conv's and dense layer's weight and output shape, seen by forward
    hooks during one pass of a zero image (so a seed model and a converted ``KerasGraph``
    alike); biases, activations, normalisation, pooling and the loss are left out (they are
    not multiply-adds).

    >>> from torch_cnn.train import seeded_model
    >>> forward_flops(seeded_model("model_cnn", 0)), forward_flops(seeded_model("model_cifar10", 0))
    (501760, 10407936)
    """
    total = 0

    def count(module: nn.Module, _args: Any, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += 2 * (module.in_channels // module.groups) * kh * kw * out[0].numel()
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * out[0].numel()

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    p = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
    return total


def cpu_info() -> dict[str, Any]:
    """Model name, flags, logical CPUs and clock (MHz) from ``/proc/cpuinfo`` (Linux)."""
    info: dict[str, Any] = {
        "model": platform.processor() or platform.machine(),
        "flags": set(),
        "logical_cpus": os.cpu_count() or 1,
        "mhz": None,
        "vendor": None,
        "family": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name":
            info["model"] = value
        elif key == "flags":
            info["flags"] = set(value.split())
        elif key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family" and value.isdigit():
            info["family"] = int(value)
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
    try:  # the rated maximum, where the kernel exposes it (not inside most VMs)
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        info["mhz"] = int(khz) / 1000
    except (OSError, ValueError):
        pass
    return info


def cpu_peak(cores: int, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An estimate of the CPU's peak FLOP/s: cores × clock × FLOP per cycle per core.

    FLOP per cycle assumes two FMA units per core (Xeon Scalable): AVX-512 fp32
    2 × 16 lanes × 2 = 64, AVX2 32; bf16 with AMX 1,024 (one 16×32×16 tile multiply-add
    per 16 cycles), with AVX512_BF16 2 × 32 products × 2 = 128. AMD Zen 4 (family 25 with
    AVX-512) runs AVX-512 on 256-bit datapaths: half those rates. Logical CPUs count as
    cores (a VM does not say which are SMT siblings). The clock is the one
    ``/proc/cpuinfo`` reports (in a VM often the nominal TSC rate): an estimate, not a
    measurement.

    >>> p = cpu_peak(2, {"flags": {"avx512f", "amx_bf16"}, "mhz": 2000.0})
    >>> p["fp32_gflops"], p["bf16_gflops"]
    (256.0, 4096.0)
    >>> zen4 = {"flags": {"avx512f", "avx512_bf16"}, "mhz": 2000.0, "vendor": "AuthenticAMD", "family": 25}
    >>> cpu_peak(2, zen4)["fp32_gflops"], cpu_peak(2, zen4)["bf16_gflops"]
    (128.0, 256.0)
    """
    info = info if info is not None else cpu_info()
    flags, mhz = info["flags"], info["mhz"]
    zen4 = info.get("vendor") == "AuthenticAMD" and info.get("family") == 25
    if "avx512f" in flags and zen4:
        fp32, fp32_basis = 32, "Zen 4 AVX-512 on 256-bit datapaths: 2 FMA units × 8 fp32 lanes × 2"
    elif "avx512f" in flags:
        fp32, fp32_basis = 64, "AVX-512: 2 FMA units × 16 fp32 lanes × 2"
    elif "avx2" in flags and "fma" in flags:
        fp32, fp32_basis = 32, "AVX2: 2 FMA units × 8 fp32 lanes × 2"
    else:
        fp32, fp32_basis = 8, "SSE: 4 lanes × 2"
    if "amx_bf16" in flags:
        bf16, bf16_basis = 1024, "AMX-BF16: 1,024 bf16 FLOP/cycle"
    elif "avx512_bf16" in flags and zen4:
        bf16, bf16_basis = 64, "Zen 4 AVX512_BF16 on 256-bit datapaths: 2 × 16 bf16 products × 2"
    elif "avx512_bf16" in flags:
        bf16, bf16_basis = 128, "AVX512_BF16: 2 FMA units × 32 bf16 products × 2"
    else:
        bf16, bf16_basis = fp32, "no bf16 instructions: fp32 rate"
    if not mhz:
        return {"fp32_gflops": None, "bf16_gflops": None, "basis": "clock unknown"}
    ghz = mhz / 1000
    return {
        "fp32_gflops": cores * ghz * fp32,
        "bf16_gflops": cores * ghz * bf16,
        "basis": (
            f"{cores} cores × {ghz:.2f} GHz × {fp32} FLOP/cycle fp32 ({fp32_basis}); "
            f"× {bf16} FLOP/cycle bf16 ({bf16_basis})"
        ),
    }


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (without it bf16 autocast is slower).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: the ``avx512_bf16`` or ``amx_bf16``
    flag in ``/proc/cpuinfo`` (oneDNN emulates bf16 on other CPUs).
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_info()["flags"]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def measure_gemm(
    device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5
) -> float:
    """GFLOP/s of an (n × n) @ (n × n) matmul in ``dtype`` on ``device``, best of ``repeats``.

    What the hardware delivers to the best-tuned kernel torch has (oneDNN/MKL, cuBLAS): a
    practical ceiling for the convolutions and dense layers of a training step.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.rand(n, n, generator=g).to(device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times[1:]) / 1e9


def load_average() -> tuple[float, float, float] | None:
    """The 1, 5 and 15-minute load averages, where the system has them."""
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    """Where and when the run happened: host, device, threads, load, peak estimate, date."""
    info = cpu_info()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": describe_device(device),
        "cpu": info["model"],
        "logical_cpus": info["logical_cpus"],
        "threads": threads,
        "bf16": bf16_supported(device),
        "cpu_peak": cpu_peak(threads, info),
        "gemm_gflops": {
            "fp32": measure_gemm(device, torch.float32),
            "bf16": measure_gemm(device, torch.bfloat16),
        },
        "load_average": load_average(),
        "versions": torch_versions(),
    }
