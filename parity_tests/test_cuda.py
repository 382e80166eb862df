"""The same parity checks with the torch model on a GPU (TF32 off); skipped without CUDA."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from parity_tests.helpers import DTYPES, MODEL_NAMES, build_seeded_pair, random_images
from torch_cnn.parity import compare_with_keras

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_matches_keras(keras: ModuleType, cuda_device: str, name: str, dtype: str) -> None:
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    keras_model, model = build_seeded_pair(keras, name, dtype, seed=11)
    x = random_images(256, seed=3, dtype=DTYPES[dtype])  # made on the CPU, then moved
    report = compare_with_keras(model.to(cuda_device), keras_model, x.to(cuda_device))
    assert report.ok, report.format()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_cuda_matches_cpu(cuda_device: str, name: str) -> None:
    """No TensorFlow needed: the GPU forward against the CPU forward of the same weights."""
    import torch_cnn

    model = torch_cnn.create_model(name, dtype=torch.float64).eval()
    x = random_images(64, seed=4, dtype=torch.float64)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to(cuda_device)(x.to(cuda_device)).cpu()
    assert (cpu - gpu).abs().max().item() <= 1e-12
