"""torch_cnn.layers.MaxPool2d: F.max_pool2d's values (and gradients), bit for bit, only faster."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import torch_cnn
from torch_cnn.layers import MaxPool2d, max_pool2d


def _tied(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Values from {0, 1, 2, 3}: most windows hold ties, where the gradient's rule shows."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, shape, generator=g).to(dtype)


SIZES = [(2, 2), (5, 5), (13, 13), (30, 30), (15, 8), (7, 31)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("size", "k"), [(s, k) for s in SIZES for k in (2, 3) if min(s) >= k])
def test_values_and_gradients_equal_max_pool2d(
    size: tuple[int, int], k: int, dtype: torch.dtype
) -> None:
    for seed, make in enumerate((_tied, lambda s, d, g: torch.randn(s, dtype=d))):
        x = make((3, 4, *size), dtype, seed)
        with torch.no_grad():  # the strided-maximum path
            assert torch.equal(max_pool2d(x, k), F.max_pool2d(x, k))
        x.requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        out, ref = max_pool2d(x, k), F.max_pool2d(x_ref, k)
        assert out.shape == ref.shape and torch.equal(out, ref)
        upstream = torch.randn(ref.shape, dtype=dtype, generator=torch.Generator().manual_seed(9))
        out.backward(upstream)
        ref.backward(upstream)
        assert x.grad is not None and x_ref.grad is not None
        assert torch.equal(x.grad, x_ref.grad), f"max |Δ| {(x.grad - x_ref.grad).abs().max()}"


def test_nan_propagates_like_max_pool2d() -> None:
    x = torch.rand(1, 1, 4, 4)
    x[0, 0, 1, 2] = float("nan")
    assert torch.equal(max_pool2d(x, 2).isnan(), F.max_pool2d(x, 2).isnan())
    assert max_pool2d(x, 2).isnan().sum() == 1


def test_other_layouts_and_settings_fall_back() -> None:
    x = torch.randn(2, 3, 8, 8)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool2d(cl, 2), F.max_pool2d(cl, 2))
    overlapping = MaxPool2d(3, stride=2)
    assert torch.equal(overlapping(x), F.max_pool2d(x, 3, stride=2))
    with_indices = MaxPool2d(2, return_indices=True)
    assert torch.equal(with_indices(x)[1], F.max_pool2d(x, 2, return_indices=True)[1])


def test_models_train_exactly_as_with_nn_maxpool() -> None:
    """model_cifar10 with torch's own nn.MaxPool2d: the same outputs and gradients, bit for bit."""
    model = torch_cnn.create_model("model_cifar10", dtype=torch.float64)
    reference = copy.deepcopy(model)
    reference.pool1 = torch.nn.MaxPool2d(2)
    reference.pool2 = torch.nn.MaxPool2d(2)
    x = torch.rand(16, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for m in (model, reference):
        F.cross_entropy(m(x), torch.arange(16) % 10).backward()
    assert torch.equal(model(x), reference(x))
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.equal(p.grad, q.grad), name
