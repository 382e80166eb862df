"""The suite can fail: deliberately wrong ports must be caught, at the layer where they go wrong."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
import torch
from torch import nn

import torch_cnn
from parity_tests.helpers import build_seeded_pair, random_images
from torch_cnn import porting
from torch_cnn.parity import compare_with_keras


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_symmetric_padding_is_caught(keras: ModuleType, dtype: str) -> None:
    """torch's padding=1 on model_cnn's 3×3 stride-2 conv: right 8×8 shape, wrong values."""
    keras_model, model = build_seeded_pair(keras, "model_cnn", dtype, seed=7)
    good = model.conv2
    wrong = nn.Conv2d(10, 20, 3, stride=2, padding=1, dtype=good.weight.dtype)
    wrong.load_state_dict(good.state_dict())
    model.conv2 = wrong
    x = random_images(16, seed=5, dtype=good.weight.dtype)
    assert model(x).shape == (16, 10)  # the shape alone would not notice
    report = compare_with_keras(model, keras_model, x)
    assert report.first_divergence is not None
    assert report.first_divergence.torch_module == "conv2"
    assert report.first_divergence.max_abs > 1e-2
    probs_delta = next(d for d in report.layers if d.torch_module == "fc").max_abs
    assert probs_delta > 1e-3, "the wrong padding should move the probabilities"


Transform = Callable[[np.ndarray, "porting._CHW"], np.ndarray]


def _wrong_ports() -> dict[str, tuple[str, Transform, dict[str, str]]]:
    return {
        # Flatten order left as Keras's (H, W, C): Dense rows not permuted.
        "flatten_without_permutation": (
            "Dense", lambda k, chw: k.T, {"model_cnn": "fc", "model_cifar10": "fc1"},
        ),
        # Kernel reshaped instead of transposed: same shape, scrambled values.
        "kernel_reshaped_not_transposed": (
            "Conv2D", lambda k, chw: k.reshape(k.shape[3], k.shape[2], k.shape[0], k.shape[1]),
            {"model_cnn": "conv1", "model_cifar10": "conv1"},
        ),
        # kh and kw swapped: square kernels keep their shape, lose their orientation.
        "kernel_height_width_swapped": (
            "Conv2D", lambda k, chw: k.transpose(3, 2, 1, 0),
            {"model_cnn": "conv1", "model_cifar10": "conv1"},
        ),
    }  # fmt: skip


@pytest.mark.parametrize("name", torch_cnn.list_models())
@pytest.mark.parametrize("variant", sorted(_wrong_ports()))
def test_wrong_port_is_caught(
    keras: ModuleType, monkeypatch: pytest.MonkeyPatch, variant: str, name: str
) -> None:
    kind, transform, where = _wrong_ports()[variant]
    monkeypatch.setitem(porting.KERNEL_TO_TORCH, kind, transform)
    keras_model, model = build_seeded_pair(keras, name, "float64", seed=7)
    report = compare_with_keras(model, keras_model, random_images(16, seed=5, dtype=torch.float64))
    assert report.first_divergence is not None, report.format()
    assert report.first_divergence.torch_module == where[name]
    assert report.first_divergence.max_abs > 1e-3
    assert not report.ok


def test_a_small_weight_error_fails_float32_tolerance(keras: ModuleType) -> None:
    """The 1e-5 bar is tight enough to see one weight off by 1e-3."""
    keras_model, model = build_seeded_pair(keras, "model_cifar10", "float32", seed=7)
    with torch.no_grad():
        model.fc2.weight[3, 5] += 1e-3
    report = compare_with_keras(model, keras_model, random_images(64, seed=5))
    assert report.first_divergence is not None
    assert report.first_divergence.torch_module == "fc2"
