"""The two seed architectures; importing this package registers them."""

from torch_cnn.models.base import KerasStyleNet, LayerInfo
from torch_cnn.models.cnn import ModelCifar10, ModelCifar10Config, ModelCNN, ModelCNNConfig

__all__ = [
    "KerasStyleNet",
    "LayerInfo",
    "ModelCNN",
    "ModelCNNConfig",
    "ModelCifar10",
    "ModelCifar10Config",
]
