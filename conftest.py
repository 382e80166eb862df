"""Fixtures shared by tests/ and parity_tests/.

Tests that need CIFAR-10 or TensorFlow skip on a user's machine without them,
and fail instead in CI (``CI`` set, as ``.ci/run`` runs): there nothing may skip
for want of data or Keras. CUDA tests skip wherever there is no GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must not skip this test)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def cifar10_dir() -> Path:
    """The CIFAR-10 python-batch directory named by ``CIFAR10_DIR``."""
    value = os.environ.get("CIFAR10_DIR")
    if not value:
        _missing("CIFAR10_DIR is not set")
    path = Path(str(value))
    if not (path / "test_batch").is_file():
        _missing(f"CIFAR10_DIR={path} holds no test_batch")
    return path


@pytest.fixture(scope="session")
def keras() -> ModuleType:
    """Keras 3 on TensorFlow (the reference implementation)."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import keras as keras_module
    except ImportError as exc:
        _missing(f"Keras is not installed: {exc}")
    if keras_module.backend.backend() != "tensorflow":
        _missing(f"Keras runs on {keras_module.backend.backend()!r}; the reference is TensorFlow")
    return keras_module


@pytest.fixture(scope="session")
def keras_ref(keras: ModuleType) -> ModuleType:
    """The Keras reference models (imported here, so test modules load without Keras)."""
    import keras_ref as keras_ref_module

    return keras_ref_module


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zoo's residual_bn model (it ends in softmax) converted, as a .safetensors file."""
    import torch_cnn

    path = tmp_path_factory.mktemp("converted") / "residual_bn.safetensors"
    zoo_file = Path(__file__).parent / "parity_tests" / "zoo" / "residual_bn" / "model.keras"
    torch_cnn.save(torch_cnn.from_keras(zoo_file), path)
    return path


@pytest.fixture
def cuda_device() -> str:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return "cuda"


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> Iterator[None]:
    """Every test leaves torch's thread count as it found it. float32 results depend on it
    (reductions split differently): model_cifar10's chaotic float32 trajectory follows Keras
    for 25 steps with 2 threads and 18 with 1, so one test's leftover setting (a benchmark run
    in process sets it) must not decide another's."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
