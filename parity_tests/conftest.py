"""Fixtures of the parity suite (the shared ``keras``/``cifar10_dir`` ones live in ../conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch


@pytest.fixture(scope="session")
def real_test_images(cifar10_dir: Path) -> torch.Tensor:
    """The real CIFAR-10 test images from ``CIFAR10_DIR``, float64 NCHW in [0, 1] (cast per test)."""
    from torch_cnn.data import load_cifar10

    images = load_cifar10(cifar10_dir).test.images
    return images.to(torch.float64) / 255.0


@pytest.fixture(scope="session")
def side_by_side(keras: ModuleType) -> ModuleType:
    """``keras_ref.side_by_side``: Keras and torch_cnn on the same weights and batches."""
    from keras_ref import side_by_side as module

    return module


@pytest.fixture(autouse=True)
def _no_tf32() -> Iterator[None]:
    """Parity mode: TF32 off on CUDA (cuDNN allows it by default), restored after the test."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread for the test: torch's and TensorFlow's thread pools, alternating on
    tiny ops, spin against each other (a 2×3×13×14 conv took 20 ms instead of 0.4)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
