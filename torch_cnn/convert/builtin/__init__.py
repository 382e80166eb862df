"""The built-in Keras layer converters; importing this package registers them."""

from torch_cnn.convert.builtin import (  # noqa: F401
    activation,
    conv,
    core,
    merge,
    normalization,
    ops,
    pooling,
    spatial,
)
