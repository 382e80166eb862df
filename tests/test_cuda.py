"""The GPU against the CPU, without Keras; skipped without CUDA.

The parity checks against Keras on the GPU (TF32 off) are test_forward's, with device=cuda.
"""

from __future__ import annotations

import pytest
import torch

from parity_tests.helpers import MODEL_NAMES, random_images

pytestmark = pytest.mark.cuda


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
