"""Training and evaluation: Keras's ``fit``/``evaluate`` recipe, written natively in PyTorch.

Modules, bottom to top: ``results`` (``History``, ``EvalResult``), ``progress``,
``checkpoint`` (``last.pt``), ``loop`` (``fit``, ``evaluate``) and ``run`` (the run
directory). Everything users need is importable from here.
"""

from torch_cnn.env import default_device
from torch_cnn.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    model_from_checkpoint,
)
from torch_cnn.train.loop import (
    EVAL_BATCH_SIZE,
    KERAS_FIT_BATCH_SIZE,
    default_optimizer,
    evaluate,
    fit,
    optimizer_hparams,
    seeded_model,
)
from torch_cnn.train.objective import as_tensors
from torch_cnn.train.results import EvalResult, History

__all__ = [
    "CHECKPOINT_NAME",
    "EVAL_BATCH_SIZE",
    "KERAS_FIT_BATCH_SIZE",
    "EvalResult",
    "History",
    "as_tensors",
    "default_device",
    "default_optimizer",
    "evaluate",
    "fit",
    "load_checkpoint",
    "model_from_checkpoint",
    "optimizer_hparams",
    "seeded_model",
]
