"""Outputs after porting: every layer, real CIFAR-10 test images and seeded random inputs.

float32: max |Δ| ≤ 1e-5 on every layer with 100% top-1 agreement; float64: ≤ 1e-12.
A failure names the first layer that diverges. The torch side runs on the CPU and, where
there is one, on a GPU with TF32 off (inputs made on the CPU, then moved).

Every test runs the models as users get them: on their default path (``memory_format="auto"``:
a float32 batch through model_cifar10 computes channels_last inside the model; the first test
below checks that it does). ``test_plain_nchw_and_forced_channels_last_on_real_images`` keeps the plain NCHW path
(``memory_format="contiguous"``) checked against Keras too, and forced channels_last.
"""

from __future__ import annotations

import copy
from functools import cache
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from parity_tests.helpers import DTYPES, MODEL_NAMES, build_seeded_pair, random_images
from torch_cnn.models import KerasStyleNet
from torch_cnn.parity import ParityReport, compare_with_keras, default_atol

BATCH_SIZES = (1, 7, 256)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@cache
def _pair(keras: ModuleType, name: str, dtype: str) -> tuple[Any, KerasStyleNet]:
    return build_seeded_pair(keras, name, dtype, seed=1234)


def _on(device: str, model: KerasStyleNet, x: torch.Tensor) -> tuple[KerasStyleNet, torch.Tensor]:
    """The (cached) model and the input on ``device``; the cached CPU model stays where it is."""
    if device == "cpu":
        return model, x
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    return copy.deepcopy(model).to(device), x.to(device)


def _check(report: ParityReport) -> None:
    bad = report.first_divergence
    assert bad is None, f"first divergence at {bad}\n{report.format()}"
    assert report.top1_agreement == 1.0, report.format()
    assert report.ok


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_the_suite_runs_the_default_path(keras: ModuleType, name: str, dtype: str) -> None:
    """The models under test compute as a user's do: a float32 batch through model_cifar10's
    wide convolutions in channels_last (the fast default), model_cnn and float64 in plain
    NCHW (where channels_last is not faster)."""
    _, model = _pair(keras, name, dtype)
    x = random_images(2, seed=0, dtype=DTYPES[dtype])
    assert model.memory_format == "auto"
    wide = name == "model_cifar10" and dtype == "float32"
    expected = torch.channels_last if wide else torch.contiguous_format
    assert model.compute_format(x) == expected
    seen: list[torch.Tensor] = []
    hook = model.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(x)
    finally:
        hook.remove()
    assert seen[0].is_contiguous(memory_format=expected) and seen[0].is_contiguous() != wide


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_plain_nchw_and_forced_channels_last_on_real_images(
    keras: ModuleType, real_test_images: torch.Tensor, name: str
) -> None:
    """The plain NCHW path (``memory_format="contiguous"``) stays within the bar too, and so
    does channels_last forced where the default does not choose it (model_cnn)."""
    keras_model, default = _pair(keras, name, "float32")
    for memory_format in ("contiguous", "channels_last"):
        model = copy.deepcopy(default)
        model.memory_format = memory_format
        _check(compare_with_keras(model, keras_model, real_test_images.to(torch.float32)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_random_inputs(keras: ModuleType, name: str, dtype: str, batch: int, device: str) -> None:
    keras_model, model = _pair(keras, name, dtype)
    model, x = _on(device, model, random_images(batch, seed=batch, dtype=DTYPES[dtype]))
    report = compare_with_keras(model, keras_model, x)
    assert report.atol == default_atol(DTYPES[dtype])
    _check(report)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", (*BATCH_SIZES, None))
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_real_images(
    keras: ModuleType,
    real_test_images: torch.Tensor,
    name: str,
    dtype: str,
    batch: int | None,
    device: str,
) -> None:
    keras_model, model = _pair(keras, name, dtype)
    model, x = _on(device, model, real_test_images[:batch].to(DTYPES[dtype]))
    report = compare_with_keras(model, keras_model, x)
    assert report.n_images == (batch or len(real_test_images))
    _check(report)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_predict_matches_forward_on_real_images(
    keras: ModuleType, real_test_images: torch.Tensor, name: str
) -> None:
    """Keras's compiled ``predict`` (not only its eager layers) against ``model(x)``."""
    keras_model, model = _pair(keras, name, "float32")
    x = real_test_images.to(torch.float32)
    expected = keras_model.predict(x.permute(0, 2, 3, 1).numpy(), batch_size=256, verbose=0)
    with torch.no_grad():
        got = model(x).numpy()
    assert np.abs(got - expected).max() <= 1e-5
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_logits_are_pre_softmax(keras: ModuleType, name: str) -> None:
    """``model.logits`` is the last Dense before its activation, as Keras computes it."""
    keras_model, model = _pair(keras, name, "float64")
    x = random_images(7, seed=3, dtype=torch.float64)
    last = keras_model.layers[-1]
    with torch.no_grad():
        logits = model.logits(x).numpy()
        probs = model(x).numpy()
    # Keras's own pre-activation: the Dense kernel applied to the previous layer's output.
    kernel, bias = (np.asarray(w) for w in last.get_weights())
    prev = keras.Model(keras_model.inputs, keras_model.layers[-2].output)(
        [x.permute(0, 2, 3, 1).numpy()]
    )
    expected = np.asarray(prev) @ kernel + bias
    assert np.abs(logits - expected).max() <= 1e-12
    if model.output_activation == "softmax":
        assert np.abs(torch.softmax(torch.from_numpy(logits), -1).numpy() - probs).max() <= 1e-15
    else:
        assert np.array_equal(logits, probs)
