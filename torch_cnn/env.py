"""What a result depends on: versions and the device, described one way for the whole package."""

from __future__ import annotations

import platform

import numpy as np
import torch

from torch_cnn._version import __version__


def versions() -> dict[str, str]:
    """The versions a result depends on: Python, torch, NumPy, torch_cnn."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "torch_cnn": __version__,
    }


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_device(value: str | torch.device | None) -> torch.device:
    """``value`` as a device (``None``: ``default_device()``)."""
    if value is None or value == "":
        return default_device()
    return torch.device(value)


def describe_device(device: torch.device | str) -> str:
    """``'cuda: NVIDIA H100 80GB HBM3'`` or ``'cpu: x86_64, 2 threads'``: what a timing ran on."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.machine()}, {torch.get_num_threads()} threads"
