"""Any Keras CNN into native PyTorch: ``from_keras`` and the layer-converter registry."""

from torch_cnn.convert import builtin as _builtin  # noqa: F401  (registers the converters)
from torch_cnn.convert.api import from_keras
from torch_cnn.convert.build import from_config
from torch_cnn.convert.optimizer import optimizer_from_keras
from torch_cnn.convert.registry import (
    BuildContext,
    ConversionError,
    Converted,
    KerasCall,
    TensorArg,
    get_converter,
    register_keras_layer,
    supported_layers,
)

__all__ = [
    "BuildContext",
    "ConversionError",
    "Converted",
    "KerasCall",
    "TensorArg",
    "from_config",
    "from_keras",
    "get_converter",
    "optimizer_from_keras",
    "register_keras_layer",
    "supported_layers",
]
