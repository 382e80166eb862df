"""Small torch modules that reproduce Keras/TensorFlow semantics, one family per module.

``padding`` (TF 'same'), ``conv`` (separable and transposed convs), ``pooling``,
``spatial`` (crop, upsample, flatten, reshape, permute in Keras's layout), ``core``
(Dense on maps, rescaling, scalar ops), ``activations``, ``norm`` (Keras's BatchNorm,
Normalization), ``regularization`` (dropout and noise) and ``merge``.
"""

from torch_cnn.layers.activations import KerasActivation, KerasReLU, PReLU, Softmax, get_activation
from torch_cnn.layers.conv import (
    ConvTranspose2dSame,
    SeparableConv2d,
    conv_transpose_padding,
    create_conv_transpose2d,
)
from torch_cnn.layers.core import ChannelLinear, Rescaling, ScalarOp, UnaryOp
from torch_cnn.layers.merge import Concatenate, Merge
from torch_cnn.layers.norm import BatchNorm1d, BatchNorm2d, Normalization
from torch_cnn.layers.padding import Conv2dSame, PadSame2d, create_conv2d, pad_same, same_padding
from torch_cnn.layers.pooling import (
    AvgPool2dSame,
    GlobalPool2d,
    MaxPool2d,
    MaxPool2dSame,
    max_pool2d,
)
from torch_cnn.layers.regularization import GaussianDropout, GaussianNoise, NoiseShapeDropout
from torch_cnn.layers.spatial import (
    Crop2d,
    FlattenChannelsLast,
    Permute,
    Reshape,
    UpSample2d,
    tf_resize_bilinear,
)

__all__ = [
    "AvgPool2dSame",
    "BatchNorm1d",
    "BatchNorm2d",
    "ChannelLinear",
    "Concatenate",
    "Conv2dSame",
    "ConvTranspose2dSame",
    "Crop2d",
    "FlattenChannelsLast",
    "GaussianDropout",
    "GaussianNoise",
    "GlobalPool2d",
    "KerasActivation",
    "KerasReLU",
    "MaxPool2d",
    "MaxPool2dSame",
    "Merge",
    "NoiseShapeDropout",
    "Normalization",
    "PReLU",
    "PadSame2d",
    "Permute",
    "Rescaling",
    "Reshape",
    "ScalarOp",
    "SeparableConv2d",
    "Softmax",
    "UnaryOp",
    "UpSample2d",
    "conv_transpose_padding",
    "create_conv2d",
    "create_conv_transpose2d",
    "get_activation",
    "max_pool2d",
    "pad_same",
    "same_padding",
    "tf_resize_bilinear",
]
