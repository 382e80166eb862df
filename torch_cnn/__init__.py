"""torch-cnn: any Keras CNN as native, trainable PyTorch, without TensorFlow.

``from_keras`` converts a Keras model file or a live ``keras.Model``; the two seed models
of the project's CIFAR-10 notebooks are registered by name.

>>> import torch, torch_cnn
>>> torch_cnn.list_models()
['model_cifar10', 'model_cnn']
>>> model = torch_cnn.create_model("model_cifar10")
>>> model(torch.rand(8, 3, 32, 32)).shape
torch.Size([8, 10])
"""

from torch_cnn import models as _models  # noqa: F401  (registers the seed models)
from torch_cnn import optim, predict
from torch_cnn._version import __version__
from torch_cnn.convert import (
    ConversionError,
    from_keras,
    optimizer_from_keras,
    register_keras_layer,
    supported_layers,
)
from torch_cnn.porting import (
    KerasLayer,
    KerasModelRecord,
    PortingError,
    export_keras_weights,
    load_keras_weights,
)
from torch_cnn.registry import create_model, list_models, register_model
from torch_cnn.summary import summary
from torch_cnn.train import EvalResult, History, evaluate, fit
from torch_cnn.weights import CheckpointError, load, save

__all__ = [
    "CheckpointError",
    "ConversionError",
    "EvalResult",
    "History",
    "KerasLayer",
    "KerasModelRecord",
    "PortingError",
    "__version__",
    "create_model",
    "evaluate",
    "export_keras_weights",
    "fit",
    "from_keras",
    "list_models",
    "load",
    "load_keras_weights",
    "optim",
    "optimizer_from_keras",
    "predict",
    "register_keras_layer",
    "register_model",
    "save",
    "summary",
    "supported_layers",
]
