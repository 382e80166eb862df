"""What a result depends on: versions and the device, described one way for the whole package."""

from __future__ import annotations

import platform

import numpy as np
import torch

from torch_cnn._version import __version__


def versions() -> dict[str, str]:
    """The versions a result depends on: Python, torch, NumPy, torch_cnn (and CUDA's, when torch
    was built with it)."""
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_cnn": __version__,
    }
    if torch.version.cuda:
        out["cuda"] = str(torch.version.cuda)
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(value: str | torch.device | None) -> torch.device:
    """``value`` as a device (``None``: ``default_device()``)."""
    if value is None or value == "":
        return default_device()
    return torch.device(value)


def describe_device(device: torch.device | str) -> str:
    """``'cuda: NVIDIA H100 80GB HBM3'`` or ``'cpu: AMD EPYC 9R14 (x86_64), 2 threads'``: what a
    result ran on."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return (
        f"cpu: {cpu_model()} ({platform.machine()}), {threads} thread{'' if threads == 1 else 's'}"
    )
