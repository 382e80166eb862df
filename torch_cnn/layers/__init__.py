"""Small layers that reproduce Keras/TensorFlow semantics in PyTorch."""

from torch_cnn.layers.padding import Conv2dSame, PadSame2d, create_conv2d, pad_same, same_padding
from torch_cnn.layers.pooling import MaxPool2d, max_pool2d

__all__ = [
    "Conv2dSame",
    "MaxPool2d",
    "PadSame2d",
    "create_conv2d",
    "max_pool2d",
    "pad_same",
    "same_padding",
]
