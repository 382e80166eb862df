"""The two seed architectures (importing this package registers them) and ``KerasGraph``, the
module any converted Keras model is."""

from torch_cnn.models.base import KerasStyleNet, LayerInfo
from torch_cnn.models.cnn import ModelCifar10, ModelCifar10Config, ModelCNN, ModelCNNConfig
from torch_cnn.models.graph import KerasGraph

# What training, evaluation, saving and summaries accept: a seed model or a converted one.
TorchCnnModel = KerasStyleNet | KerasGraph

__all__ = [
    "KerasGraph",
    "KerasStyleNet",
    "LayerInfo",
    "ModelCNN",
    "ModelCNNConfig",
    "ModelCifar10",
    "ModelCifar10Config",
    "TorchCnnModel",
]
