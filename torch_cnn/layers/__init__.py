"""Small layers that reproduce Keras/TensorFlow semantics in PyTorch."""

from torch_cnn.layers.padding import Conv2dSame, PadSame2d, create_conv2d, pad_same, same_padding

__all__ = ["Conv2dSame", "PadSame2d", "create_conv2d", "pad_same", "same_padding"]
