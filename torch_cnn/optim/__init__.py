"""Keras 3's optimizers as torch optimizers, step for step and dtype for dtype.

``torch.optim.Adam`` is not Keras's Adam with another name: Keras adds epsilon to the
*uncorrected* ``sqrt(v)``, folds both bias corrections into the step size, and rounds
β₁, β₂ to float32 before raising them to the step count. The same care goes into
Keras's SGD, RMSprop and AdamW and into the base optimizer's weight decay and gradient
clipping, so that trajectories trained here and with ``model.compile(optimizer=...)``
stay together (float64: ≤ 1e-10 after 50 steps on the seed models, see
``parity_tests/test_training_parity.py``; bit for bit on toy tensors, see
``parity_tests/test_keras_optimizers.py``).

- ``base``: ``KerasOptimizer``, Keras's base optimizer (clipping, weight decay,
  ``iterations``) around each transcribed ``update_step``.
- ``keras_optimizers``: ``KerasAdam``, ``KerasAdamW``, ``KerasSGD``, ``KerasRMSprop``
  and Keras's defaults as constants (``KERAS_ADAM_EPSILON``, ...).
- ``ieee``: correctly rounded square roots (``ieee_sqrt``, ``device_ieee_sqrt``).
- ``keras_state``: a Keras optimizer config and saved variables into these
  optimizers and back (``optimizer_from_keras_config``, ``load_keras_optimizer_state``,
  ``keras_optimizer_state``).
- ``factory``: ``create_optimizer(name, params, **hparams)`` and ``list_optimizers()``.
"""

from torch_cnn.optim.base import KerasOptimizer, weight_decay_param_groups
from torch_cnn.optim.factory import create_optimizer, list_optimizers, optimizer_summary
from torch_cnn.optim.ieee import device_ieee_sqrt, ieee_sqrt
from torch_cnn.optim.keras_optimizers import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KERAS_ADAM_EPSILON,
    KERAS_ADAM_LEARNING_RATE,
    KERAS_ADAMW_WEIGHT_DECAY,
    KERAS_RMSPROP_EPSILON,
    KERAS_RMSPROP_LEARNING_RATE,
    KERAS_RMSPROP_MOMENTUM,
    KERAS_RMSPROP_RHO,
    KERAS_SGD_LEARNING_RATE,
    KERAS_SGD_MOMENTUM,
    KerasAdam,
    KerasAdamW,
    KerasRMSprop,
    KerasSGD,
)
from torch_cnn.optim.keras_state import (
    KERAS_OPTIMIZER_CLASSES,
    keras_optimizer_state,
    load_keras_optimizer_state,
    optimizer_from_keras_config,
)

__all__ = [
    "KERAS_ADAMW_WEIGHT_DECAY",
    "KERAS_ADAM_BETA_1",
    "KERAS_ADAM_BETA_2",
    "KERAS_ADAM_EPSILON",
    "KERAS_ADAM_LEARNING_RATE",
    "KERAS_OPTIMIZER_CLASSES",
    "KERAS_RMSPROP_EPSILON",
    "KERAS_RMSPROP_LEARNING_RATE",
    "KERAS_RMSPROP_MOMENTUM",
    "KERAS_RMSPROP_RHO",
    "KERAS_SGD_LEARNING_RATE",
    "KERAS_SGD_MOMENTUM",
    "KerasAdam",
    "KerasAdamW",
    "KerasOptimizer",
    "KerasRMSprop",
    "KerasSGD",
    "create_optimizer",
    "device_ieee_sqrt",
    "ieee_sqrt",
    "keras_optimizer_state",
    "list_optimizers",
    "load_keras_optimizer_state",
    "optimizer_from_keras_config",
    "optimizer_summary",
    "weight_decay_param_groups",
]
