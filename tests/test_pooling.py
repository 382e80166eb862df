"""torch_cnn.layers.MaxPool2d: F.max_pool2d's values (and gradients), bit for bit, only faster, in
NCHW and channels_last."""

from __future__ import annotations

import copy

import numpy as np
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


def numpy_max_pool(x: np.ndarray, k: int, upstream: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An independent reference: non-overlapping k×k max-pooling (floor) and its backward in
    NumPy, one window at a time. The gradient goes to the window's first maximum in
    row-major order (``np.argmax``), the rule torch's max_pool2d follows on ties."""
    n, c, h, w = x.shape
    oh, ow = h // k, w // k
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    grad = np.zeros_like(x)
    for i in np.ndindex(n, c, oh, ow):
        b, ch, r, q = i
        window = x[b, ch, r * k : (r + 1) * k, q * k : (q + 1) * k]
        flat = int(np.argmax(window))
        out[i] = window.flat[flat]
        grad[b, ch, r * k + flat // k, q * k + flat % k] += upstream[i]
    return out, grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("size", "k"), [(s, k) for s in SIZES for k in (2, 3) if min(s) >= k])
def test_values_and_gradients_match_a_numpy_reference(
    size: tuple[int, int], k: int, dtype: torch.dtype
) -> None:
    """Values on both paths (no grad: the strided maximum; with grad: what training runs) and the
    gradient, against the NumPy reference above: exact, ties included."""
    for seed, make in enumerate((_tied, lambda s, d, g: torch.randn(s, dtype=d))):
        x = make((3, 4, *size), dtype, seed)
        g = torch.Generator().manual_seed(9)
        upstream = torch.randn((3, 4, size[0] // k, size[1] // k), dtype=dtype, generator=g)
        expected, expected_grad = numpy_max_pool(x.numpy(), k, upstream.numpy())
        with torch.no_grad():  # the strided-maximum path
            assert np.array_equal(max_pool2d(x, k).numpy(), expected)
        x.requires_grad_()
        out = MaxPool2d(k)(x)
        assert np.array_equal(out.detach().numpy(), expected)
        out.backward(upstream)
        assert x.grad is not None
        assert np.array_equal(x.grad.numpy(), expected_grad), (
            f"max |Δ| {np.abs(x.grad.numpy() - expected_grad).max()}"
        )


def test_the_reference_catches_a_wrong_gradient_rule() -> None:
    """The check can fail: sending a tied window's gradient to its *last* maximum is caught."""
    x = torch.tensor([[[[1.0, 1.0], [0.0, 1.0]]]], requires_grad=True)
    upstream = np.ones((1, 1, 1, 1))
    _, expected = numpy_max_pool(x.detach().numpy(), 2, upstream)
    wrong = np.zeros_like(expected)
    wrong[0, 0, 1, 1] = 1.0  # the last of the three tied maxima
    assert not np.array_equal(wrong, expected)
    MaxPool2d(2)(x).backward(torch.ones(1, 1, 1, 1))
    assert x.grad is not None and np.array_equal(x.grad.numpy(), expected)


def test_nan_propagates_like_max_pool2d() -> None:
    x = torch.rand(1, 1, 4, 4)
    x[0, 0, 1, 2] = float("nan")
    assert torch.equal(max_pool2d(x, 2).isnan(), F.max_pool2d(x, 2).isnan())
    assert max_pool2d(x, 2).isnan().sum() == 1


@pytest.mark.parametrize("k", [1, 2, 3])
def test_channels_last_strided_maximum_keeps_the_layout(k: int) -> None:
    """Inference on a channels_last map (the layout float32 models compute in by default):
    the strided maximum, bit for bit F.max_pool2d (NaN included), its output channels_last
    as F.max_pool2d's is."""
    x = _tied((3, 32, 13, 15), torch.float32, seed=k).contiguous(memory_format=torch.channels_last)
    x[0, 1, 2, 3] = float("nan")
    with torch.no_grad():
        got, want = max_pool2d(x, k), F.max_pool2d(x, k)
    assert torch.equal(got.isnan(), want.isnan())
    assert torch.equal(got.nan_to_num(), want.nan_to_num())
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert got.data_ptr() != x.data_ptr()  # a new tensor, even for a 1×1 window


def test_compiled_pooling_leaves_the_maximum_to_inductor() -> None:
    """Under torch.compile the strided maximum's ``out=`` on a channels_last tensor would break
    the graph: MaxPool2d hands the window to F.max_pool2d there (one graph, same values)."""
    import torch._dynamo as dynamo

    pool = MaxPool2d(2)
    x = torch.rand(2, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        explained = dynamo.explain(pool)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


def test_other_layouts_and_settings_fall_back() -> None:
    x = torch.randn(2, 3, 8, 8)
    cl = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(max_pool2d(cl, 2), F.max_pool2d(cl, 2))
    strided = torch.randn(2, 3, 8, 16)[..., ::2]  # neither NCHW- nor channels_last-dense
    with torch.no_grad():
        assert torch.equal(max_pool2d(strided, 2), F.max_pool2d(strided, 2))
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
