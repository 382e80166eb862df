"""The torch models on their own: registry, input checks, initialisation, logits, devices."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import torch_cnn
from torch_cnn.models import KerasStyleNet
from torch_cnn.registry import register_model

NAMES = torch_cnn.list_models()


def test_list_models() -> None:
    assert NAMES == ["model_cifar10", "model_cnn"]


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet'.*model_cifar10, model_cnn"):
        torch_cnn.create_model("resnet")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("model_cnn")(lambda **_: nn.Identity())


@pytest.mark.parametrize("name", NAMES)
def test_create_model_is_fresh_and_typed(name: str) -> None:
    a, b = torch_cnn.create_model(name), torch_cnn.create_model(name)
    assert isinstance(a, KerasStyleNet) and a is not b
    assert not torch.equal(next(a.parameters()), next(b.parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_dtype_and_meta_device(name: str) -> None:
    m64 = torch_cnn.create_model(name, dtype=torch.float64)
    assert {p.dtype for p in m64.parameters()} == {torch.float64}
    meta = torch_cnn.create_model(name, device="meta")
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    assert meta(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 10)


@pytest.mark.parametrize("name", NAMES)
def test_keras_default_initialisation(name: str) -> None:
    """glorot_uniform kernels (limit √(6/(fan_in+fan_out))), zero biases."""
    torch.manual_seed(0)
    model = torch_cnn.create_model(name)
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            assert torch.count_nonzero(p) == 0, pname
            continue
        receptive = p[0, 0].numel() if p.dim() == 4 else 1
        fan_in, fan_out = p.shape[1] * receptive, p.shape[0] * receptive
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        assert p.abs().max().item() <= limit, pname
        assert p.abs().max().item() > 0.9 * limit, pname  # uniform over the whole range
        # The variance of U(-a, a) is a²/3.
        assert abs(p.var().item() / (limit**2 / 3) - 1) < 0.25, pname


def test_output_semantics() -> None:
    x = torch.rand(5, 3, 32, 32)
    cnn, cifar = torch_cnn.create_model("model_cnn"), torch_cnn.create_model("model_cifar10")
    with torch.no_grad():
        probs = cnn(x)
        assert torch.allclose(probs.sum(1), torch.ones(5))
        assert torch.allclose(torch.softmax(cnn.logits(x), 1), probs, atol=0, rtol=0)
        assert torch.equal(cifar(x), cifar.logits(x))  # model_cifar10 returns logits


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (torch.rand(2, 32, 32, 3), ValueError, r"received shape \(2, 32, 32, 3\).*NHWC.*permute"),
        (torch.rand(3, 32, 32), ValueError, r"rank 3.*unsqueeze\(0\)"),
        (torch.rand(2, 3, 28, 28), ValueError, r"expects a batch of shape \(N, 3, 32, 32\)"),
        (torch.rand(2, 1, 32, 32), ValueError, r"received shape \(2, 1, 32, 32\)"),
        (
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
            TypeError,
            r"torch.uint8.*x.float\(\) / 255",
        ),
        (torch.rand(2, 3, 32, 32, dtype=torch.float64), TypeError, r"torch.float32 parameters"),
        ([[0.0]], TypeError, r"expects a torch.Tensor"),
    ],
    ids=["nhwc", "rank3", "size", "channels", "uint8", "float64", "list"],
)
def test_bad_input_is_named(name: str, x: object, error: type[Exception], message: str) -> None:
    model = torch_cnn.create_model(name)
    with pytest.raises(error, match=message):
        model(x)
    with pytest.raises(error, match=message):
        model.logits(x)  # type: ignore[attr-defined]


def test_summary_rejects_foreign_modules() -> None:
    with pytest.raises(TypeError, match="torch_cnn model"):
        torch_cnn.summary(nn.Linear(2, 2))


def test_summary_totals() -> None:
    from parity_tests.helpers import SEED_TOTALS  # the seeds' numbers, stated once

    text = torch_cnn.summary(torch_cnn.create_model("model_cifar10"))
    total = SEED_TOTALS["model_cifar10"]
    assert f"Total params: {total:,} ({total * 4 / 1024:.2f} KB)" in text
    assert "(None, 6, 6, 64)" in text


def test_layer_table_rows_are_checked() -> None:
    from torch_cnn.models.base import LayerInfo

    assert LayerInfo("conv1", "Conv2D", "relu").activation == "relu"
    with pytest.raises(ValueError, match=r"keras_class must be one of .*Received: 'Dropout'"):
        LayerInfo("drop", "Dropout")
    with pytest.raises(ValueError, match=r"activation must be one of .*Received: 'gelu'"):
        LayerInfo("fc", "Dense", "gelu")
    with pytest.raises(ValueError, match=r"Flatten 'flatten' takes no activation"):
        LayerInfo("flatten", "Flatten", "relu")
