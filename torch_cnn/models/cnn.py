"""The two seed models, written natively in PyTorch.

- ``model_cnn`` (seed 000, Keras functional API): two strided 'same' convs, no
  activation between them, Flatten, Dense softmax. 15,120 parameters.
- ``model_cifar10`` (seed 001, Keras Sequential): three valid ReLU convs with
  two max-pools, Flatten, Dense ReLU, Dense logits. 225,034 parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torch_cnn.layers.padding import create_conv2d
from torch_cnn.layers.pooling import MaxPool2d
from torch_cnn.models.base import KerasStyleNet, LayerInfo
from torch_cnn.registry import register_model

_Device = torch.device | str | None


def init_keras_defaults(model: nn.Module) -> None:
    """Keras's default initialisers: glorot_uniform kernels, zero biases (Conv2D and Dense).

    ``xavier_uniform_`` is glorot_uniform: for a conv weight ``(out, in, kh, kw)``
    it takes fan_in = in·kh·kw and fan_out = out·kh·kw, as Keras does for its
    ``(kh, kw, in, out)`` kernel.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


@dataclass(frozen=True)
class ModelCNNConfig:
    in_channels: int = 3
    image_size: int = 32
    filters: tuple[int, int] = (10, 20)
    num_classes: int = 10


class ModelCNN(KerasStyleNet):
    """Seed 000's ``model_cnn``: Conv2D(10, 4, s2, same) → Conv2D(20, 3, s2, same) → Flatten → Dense(10, softmax).

    >>> import torch
    >>> model = ModelCNN()
    >>> probs = model(torch.rand(4, 3, 32, 32))   # softmax, as Keras returns
    >>> logits = model.logits(torch.rand(4, 3, 32, 32))
    """

    name = "model_cnn"
    keras_api = "functional"  # seed 000 uses the functional API
    layer_table = (
        LayerInfo("conv1", "Conv2D"),
        LayerInfo("conv2", "Conv2D"),
        LayerInfo("flatten", "Flatten"),
        LayerInfo("fc", "Dense", "softmax"),
    )

    def __init__(
        self, config: ModelCNNConfig | None = None, *, device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        cfg = config or ModelCNNConfig()
        self.config = cfg
        self.input_shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        f1, f2 = cfg.filters
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.conv1 = create_conv2d(cfg.in_channels, f1, 4, stride=2, padding="same", **kw)
        self.conv2 = create_conv2d(f1, f2, 3, stride=2, padding="same", **kw)  # pads (0, 1)
        self.flatten = nn.Flatten()
        side = math.ceil(math.ceil(cfg.image_size / 2) / 2)  # two stride-2 'same' convs
        self.fc = nn.Linear(f2 * side * side, cfg.num_classes, **kw)
        init_keras_defaults(self)


@dataclass(frozen=True)
class ModelCifar10Config:
    in_channels: int = 3
    image_size: int = 32
    filters: tuple[int, int, int] = (32, 64, 128)
    hidden: int = 64
    num_classes: int = 10


class ModelCifar10(KerasStyleNet):
    """Seed 001's ``model_cifar10``: three valid ReLU convs, two max-pools, Dense(64, relu), Dense(10).

    Returns logits, as the Keras model does (its loss is
    ``SparseCategoricalCrossentropy(from_logits=True)``).
    """

    name = "model_cifar10"
    keras_api = "sequential"  # seed 001 builds a keras.Sequential
    layer_table = (
        LayerInfo("conv1", "Conv2D", "relu"),
        LayerInfo("pool1", "MaxPooling2D"),
        LayerInfo("conv2", "Conv2D", "relu"),
        LayerInfo("pool2", "MaxPooling2D"),
        LayerInfo("conv3", "Conv2D", "relu"),
        LayerInfo("flatten", "Flatten"),
        LayerInfo("fc1", "Dense", "relu"),
        LayerInfo("fc2", "Dense"),
    )

    def __init__(
        self, config: ModelCifar10Config | None = None, *, device: _Device = None,
        dtype: torch.dtype | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        cfg = config or ModelCifar10Config()
        self.config = cfg
        self.input_shape = (cfg.in_channels, cfg.image_size, cfg.image_size)
        f1, f2, f3 = cfg.filters
        kw: dict[str, Any] = {"device": device, "dtype": dtype}
        self.conv1 = create_conv2d(cfg.in_channels, f1, 3, **kw)  # (N, 32, 30, 30)
        self.pool1 = MaxPool2d(2)  # (N, 32, 15, 15)
        self.conv2 = create_conv2d(f1, f2, 3, **kw)  # (N, 64, 13, 13)
        self.pool2 = MaxPool2d(2)  # (N, 64, 6, 6): floor, as Keras 'valid'
        self.conv3 = create_conv2d(f2, f3, 3, **kw)  # (N, 128, 4, 4)
        self.flatten = nn.Flatten()  # (N, 2048)
        side = ((cfg.image_size - 2) // 2 - 2) // 2 - 2
        self.fc1 = nn.Linear(f3 * side * side, cfg.hidden, **kw)
        self.fc2 = nn.Linear(cfg.hidden, cfg.num_classes, **kw)
        init_keras_defaults(self)


@register_model("model_cnn")
def model_cnn(*, device: _Device = None, dtype: torch.dtype | None = None) -> ModelCNN:
    """Seed 000's ``model_cnn`` (15,120 parameters), returning softmax probabilities."""
    return ModelCNN(device=device, dtype=dtype)


@register_model("model_cifar10")
def model_cifar10(*, device: _Device = None, dtype: torch.dtype | None = None) -> ModelCifar10:
    """Seed 001's ``model_cifar10`` (225,034 parameters), returning logits."""
    return ModelCifar10(device=device, dtype=dtype)
