"""The Keras models the benchmark converts or ports: the seed models, the zoo's ``residual_bn`` and
``resnet_bn``, a slightly bigger residual network with BatchNorm (defined here).

``build_keras(keras, name, seed)`` returns a Keras model with seeded weights (random BatchNorm
statistics too, so that a layer the torch side fails to copy shows). The Keras process saves it
as a ``.keras`` archive; the torch side reads that file (``torch_cnn.load_keras_weights`` for a
seed model, ``torch_cnn.from_keras`` for the others) without TensorFlow, so that every framework
computes with the same weights and each row's output can be set against Keras's.

Imports nothing at load time (the Keras process loads it; Keras comes in as an argument).
"""

from __future__ import annotations

from typing import Any

SEED_MODELS = ("model_cifar10", "model_cnn")
# The converted models the benchmark times: the zoo's residual block model and a bigger one.
CONVERTED_MODELS = ("residual_bn", "resnet_bn")
RESNET_WIDTHS = (16, 32, 64)


def _basic_block(k: Any, h: Any, filters: int, stride: int) -> Any:
    """ResNet's basic block: Conv-BN-ReLU-Conv-BN plus the shortcut (a 1×1 conv + BN
    projection where the shape changes), then Add → ReLU."""
    L = k.layers
    r = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(h)
    r = L.ReLU()(L.BatchNormalization()(r))
    r = L.BatchNormalization()(L.Conv2D(filters, 3, padding="same", use_bias=False)(r))
    if stride != 1 or h.shape[-1] != filters:
        h = L.BatchNormalization()(L.Conv2D(filters, 1, strides=stride, use_bias=False)(h))
    return L.ReLU()(L.Add()([r, h]))


def resnet_bn(k: Any) -> Any:
    """A ResNet-8 for 32×32 images: a 3×3 stem (16 filters) with BatchNorm and ReLU, one basic
    block per width (16, 32, 64; stride 2 and a projection shortcut from the second on; TF's
    'same' padding pads a stride-2 3×3 conv (0, 1)), global average pooling, Dense softmax.
    About 78k parameters and 25 MFLOP per image (model_cifar10: 225k and 10 MFLOP)."""
    L = k.layers
    x = k.Input(shape=(32, 32, 3))
    h = L.Conv2D(RESNET_WIDTHS[0], 3, padding="same", use_bias=False)(x)
    h = L.ReLU()(L.BatchNormalization()(h))
    for i, filters in enumerate(RESNET_WIDTHS):
        h = _basic_block(k, h, filters, 1 if i == 0 else 2)
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))
    return k.Model(x, out, name="resnet_bn")


def build_keras(keras: Any, name: str, seed: int = 0) -> Any:
    """The Keras model ``name`` (a seed model, ``residual_bn`` or ``resnet_bn``), seeded weights."""
    from keras_ref import zoo

    if name in SEED_MODELS:
        from keras_ref.models import build_model
        from keras_ref.weights import seeded_keras_weights

        model = build_model(name)
        seeded_keras_weights(model, seed)
        return model
    if name == "resnet_bn":
        keras.backend.clear_session(free_memory=False)
        model = resnet_bn(keras)
    elif name in CONVERTED_MODELS:
        model = zoo.build(name, keras_module=keras)
    else:
        known = ", ".join((*SEED_MODELS, *CONVERTED_MODELS))
        raise ValueError(f"unknown benchmark model {name!r}; expected one of {known}")
    zoo.seed_weights(model, seed)
    return model
