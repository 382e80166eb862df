"""Porting as pure functions: checks before copying, errors naming both sides, exact round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import torch_cnn
from torch_cnn.porting import (
    KerasLayer,
    KerasModelRecord,
    PortingError,
    keras_to_torch,
    torch_to_keras,
)

NAMES = torch_cnn.list_models()
CLASSES = {
    "model_cnn": ["Conv2D", "Conv2D", "Flatten", "Dense"],
    "model_cifar10": ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense", "Dense"],
}  # fmt: skip


def record_of(model: torch.nn.Module, name: str) -> KerasModelRecord:
    """A Keras-layout record made from a torch model (names deliberately custom)."""
    layers = tuple(
        KerasLayer(f"custom_{i}", cls, {}, tuple(ws))
        for i, (cls, ws) in enumerate(zip(CLASSES[name], torch_to_keras(model), strict=True))
    )
    return KerasModelRecord("test record", layers, (32, 32, 3))


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_bit_exact(name: str, dtype: torch.dtype) -> None:
    src = torch_cnn.create_model(name, dtype=dtype)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()  # non-zero biases too
    dst = torch_cnn.create_model(name, dtype=dtype)
    torch_cnn.load_keras_weights(dst, record_of(src, name))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_pure_function_does_not_touch_the_model() -> None:
    model = torch_cnn.create_model("model_cnn")
    before = snapshot(model)
    other = torch_cnn.create_model("model_cnn")
    state = keras_to_torch(record_of(other, "model_cnn"), model)
    assert_unchanged(model, before)
    assert set(state) == set(before)


def test_layouts() -> None:
    """Conv (kh, kw, in, out) → (out, in, kh, kw); Dense (in, out) → (out, in) with (H, W, C) → (C, H, W) rows."""
    model = torch_cnn.create_model("model_cnn")
    conv_kernel = np.arange(4 * 4 * 3 * 10, dtype=np.float32).reshape(4, 4, 3, 10)
    dense_kernel = np.arange(1280 * 10, dtype=np.float32).reshape(1280, 10)
    rec = record_of(model, "model_cnn")
    layers = list(rec.layers)
    layers[0] = dataclasses.replace(layers[0], weights=(conv_kernel, layers[0].weights[1]))
    layers[3] = dataclasses.replace(layers[3], weights=(dense_kernel, layers[3].weights[1]))
    state = keras_to_torch(dataclasses.replace(rec, layers=tuple(layers)), model)
    assert state["conv1.weight"][7, 2, 1, 3].item() == conv_kernel[1, 3, 2, 7]
    # Keras flattens (h, w, c) of the (8, 8, 20) map; torch flattens (c, h, w).
    h, w, c, o = 5, 6, 17, 4
    assert state["fc.weight"][o, c * 64 + h * 8 + w].item() == dense_kernel[(h * 8 + w) * 20 + c, o]


def _expect_failure(model_name: str, record: KerasModelRecord, match: str) -> None:
    model = torch_cnn.create_model(model_name)
    before = snapshot(model)
    with pytest.raises(PortingError, match=match):
        torch_cnn.load_keras_weights(model, record)
    assert_unchanged(model, before)


def test_wrong_architecture() -> None:
    other = record_of(torch_cnn.create_model("model_cifar10"), "model_cifar10")
    _expect_failure(
        "model_cnn", other, r"Keras layer 'custom_1' \(MaxPooling2D\); torch module 'conv2'"
    )


def test_missing_and_extra_layers() -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    _expect_failure(
        "model_cnn", dataclasses.replace(rec, layers=rec.layers[:3]), r"has 3 layers.*has 4"
    )
    extra = dataclasses.replace(rec, layers=(*rec.layers, KerasLayer("more", "Dense")))
    _expect_failure("model_cnn", extra, r"has 5 layers.*has 4")


def test_wrong_shape_names_both_sides() -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    layers = list(rec.layers)
    layers[3] = dataclasses.replace(
        layers[3], name="dense", weights=(np.zeros((1000, 10), np.float32), layers[3].weights[1])
    )
    _expect_failure(
        "model_cnn",
        dataclasses.replace(rec, layers=tuple(layers)),
        r"Keras layer 'dense' \(Dense\) kernel \(1000, 10\) does not fit torch module 'fc' "
        r"\(Linear 1280→10\): expected kernel \(1280, 10\)",
    )


def test_late_error_leaves_model_unchanged() -> None:
    """The last layer is wrong: nothing before it may have been copied."""
    rec = record_of(torch_cnn.create_model("model_cifar10"), "model_cifar10")
    layers = list(rec.layers)
    layers[-1] = dataclasses.replace(layers[-1], weights=(layers[-1].weights[0],))
    _expect_failure(
        "model_cifar10", dataclasses.replace(rec, layers=tuple(layers)), "1 weight arrays"
    )


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("activation", "relu", r"activation='relu'.*activation='linear'"),
        ("padding", "valid", r"padding='valid'.*padding='same'"),
        ("strides", [1, 1], r"strides=\(1, 1\).*strides=\(2, 2\)"),
        ("data_format", "channels_first", "data_format"),
    ],
)
def test_config_mismatch(key: str, value: object, match: str) -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    layers = list(rec.layers)
    layers[1] = dataclasses.replace(layers[1], config={**CONV2_CONFIG, key: value})
    _expect_failure("model_cnn", dataclasses.replace(rec, layers=tuple(layers)), match)


# model_cnn's second conv as Keras's config writes it (as a file would hold it, lists not tuples).
CONV2_CONFIG = {"filters": 20, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same"}


def test_the_full_config_fits() -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    layers = list(rec.layers)
    layers[1] = dataclasses.replace(layers[1], config=CONV2_CONFIG)
    keras_to_torch(
        dataclasses.replace(rec, layers=tuple(layers)), torch_cnn.create_model("model_cnn")
    )


@pytest.mark.parametrize(
    ("omitted", "match"),
    [
        ("padding", r"padding='valid'.*padding='same'"),  # Keras's default, not the model's
        ("strides", r"strides=\(1, 1\).*strides=\(2, 2\)"),
        ("filters", "no 'filters' in its config"),
    ],
)
def test_an_omitted_key_means_keras_default(omitted: str, match: str) -> None:
    """A config that leaves a key out gets Keras's default for it, which must fit too: a
    Conv2D without ``activation`` is linear in Keras, so it may not port into a ReLU conv."""
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    layers = list(rec.layers)
    config = {k: v for k, v in CONV2_CONFIG.items() if k != omitted}
    layers[1] = dataclasses.replace(layers[1], config=config)
    _expect_failure("model_cnn", dataclasses.replace(rec, layers=tuple(layers)), match)


def test_a_conv_without_activation_is_not_a_relu_conv() -> None:
    rec = record_of(torch_cnn.create_model("model_cifar10"), "model_cifar10")
    layers = list(rec.layers)
    conv = {"filters": 32, "kernel_size": [3, 3]}  # no activation: linear in Keras
    layers[0] = dataclasses.replace(layers[0], config=conv)
    _expect_failure(
        "model_cifar10",
        dataclasses.replace(rec, layers=tuple(layers)),
        r"activation='linear'.*activation='relu'",
    )


def test_integer_weights_rejected() -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    layers = list(rec.layers)
    k, b = layers[0].weights
    layers[0] = dataclasses.replace(layers[0], weights=(k.astype(np.int32), b))
    _expect_failure("model_cnn", dataclasses.replace(rec, layers=tuple(layers)), "dtype int32")


def test_input_shape_checked() -> None:
    rec = record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
    _expect_failure(
        "model_cnn", dataclasses.replace(rec, input_shape=(28, 28, 1)), r"\(28, 28, 1\)"
    )


def test_foreign_model_and_source_rejected() -> None:
    with pytest.raises(TypeError, match="torch_cnn model"):
        torch_cnn.load_keras_weights(
            torch.nn.Linear(2, 2), record_of(torch_cnn.create_model("model_cnn"), "model_cnn")
        )
    with pytest.raises(TypeError, match="expected a Keras model"):
        torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), 42)
