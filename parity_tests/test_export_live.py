"""``torch_cnn.export_keras_weights`` into a live Keras model and to a .weights.h5 path."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import MODEL_NAMES, random_images


def _trained_like(name: str) -> torch.nn.Module:
    model = torch_cnn.create_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # non-zero biases, off the initial values
    return model.eval()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_to_live_keras_model(keras_ref: ModuleType, name: str) -> None:
    torch.manual_seed(0)
    model = _trained_like(name)
    keras_model = keras_ref.build_model(name)
    assert torch_cnn.export_keras_weights(model, keras_model) is keras_model
    x = random_images(32, seed=1)
    expected = model(x).detach().numpy()
    got = keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0)
    assert np.abs(got - expected).max() <= 1e-5
    back = torch_cnn.load_keras_weights(torch_cnn.create_model(name), keras_model)
    for a, b in zip(model.state_dict().values(), back.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_to_file_loads_in_keras(keras_ref: ModuleType, tmp_path: Path, name: str) -> None:
    torch.manual_seed(1)
    model = _trained_like(name)
    path = torch_cnn.export_keras_weights(model, tmp_path / "m.weights.h5")
    keras_model = keras_ref.build_model(name)
    keras_model.load_weights(path)
    x = random_images(32, seed=2)
    got = keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0)
    assert np.abs(got - model(x).detach().numpy()).max() <= 1e-5


def test_export_refuses_the_wrong_architecture(keras_ref: ModuleType) -> None:
    keras_model = keras_ref.build_model("model_cifar10")
    before = [w.copy() for w in keras_model.get_weights()]
    with pytest.raises(torch_cnn.PortingError, match="model_cnn"):
        torch_cnn.export_keras_weights(torch_cnn.create_model("model_cnn"), keras_model)
    assert all(np.array_equal(a, b) for a, b in zip(before, keras_model.get_weights(), strict=True))
