"""keras_ref itself: the seeds' preprocessing (without seed 001's typo) and the dtype scope."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

from torch_cnn import data


def test_preprocess_is_255_for_every_split(keras_ref: ModuleType) -> None:
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    got = keras_ref.preprocess(x)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32([[0.0, 0.2, 1.0]]))  # /225 would give 1.1333
    # torch_cnn's loader computes the very same floats.
    images = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    np.testing.assert_array_equal(
        data.to_float(torch.from_numpy(images)).numpy(), keras_ref.preprocess(images)
    )
    with pytest.raises(TypeError, match="uint8 images; received dtype float64"):
        keras_ref.preprocess(np.zeros(3))


def test_dtype_scope_restores_floatx_and_policy(keras: ModuleType, keras_ref: ModuleType) -> None:
    before = keras.config.floatx(), keras.config.dtype_policy().name
    model = keras_ref.build_model("model_cnn", "float64")
    assert {w.dtype for w in model.weights} == {"float64"}
    assert (keras.config.floatx(), keras.config.dtype_policy().name) == before
    with pytest.raises(RuntimeError, match="inside"), keras_ref.dtype_scope("float64"):
        assert keras.config.floatx() == "float64"
        raise RuntimeError("inside the scope")
    assert (keras.config.floatx(), keras.config.dtype_policy().name) == before
    with pytest.raises(ValueError, match="Known models: model_cifar10, model_cnn"):
        keras_ref.build_model("resnet")
