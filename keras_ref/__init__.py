"""The Keras reference models, transcribed from the seed notebooks in ``../shared/seeds/``.

Importing this package needs Keras 3 (the ``keras`` extra). The models are built
exactly as the seeds build them, so the parity suite compares torch_cnn with
what the notebooks ran, not with a second reimplementation.
"""

from keras_ref.models import MODELS, build_model, dtype_scope, model_cifar10, model_cnn
from keras_ref.preprocess import preprocess

__all__ = ["MODELS", "build_model", "dtype_scope", "model_cifar10", "model_cnn", "preprocess"]
