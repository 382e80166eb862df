"""Keras ⇄ PyTorch weight porting: the front door (``load_keras_weights``, ``export_keras_weights``).

The package, bottom to top: ``records`` (what a Keras source is), ``transforms``
(pure per-layer layout transforms and the seed models' checks), ``keras_files``
(reading and writing Keras files without TensorFlow), ``live`` (live Keras
models) and this module, which picks the right one for a source.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from torch_cnn.models.base import KerasStyleNet
from torch_cnn.porting import keras_files, keras_writer
from torch_cnn.porting.live import export_to_keras_model, record_from_keras_model
from torch_cnn.porting.records import KerasLayer, KerasModelRecord, PortingError
from torch_cnn.porting.transforms import (
    KERNEL_TO_KERAS,
    KERNEL_TO_TORCH,
    conv_kernel_to_torch,
    conv_weight_to_keras,
    dense_kernel_to_torch,
    dense_weight_to_keras,
    keras_to_torch,
    torch_to_keras,
)
from torch_cnn.registry import create_model, list_models

__all__ = [
    "KERNEL_TO_KERAS",
    "KERNEL_TO_TORCH",
    "KerasLayer",
    "KerasModelRecord",
    "PortingError",
    "conv_kernel_to_torch",
    "conv_weight_to_keras",
    "dense_kernel_to_torch",
    "dense_weight_to_keras",
    "export_keras_weights",
    "export_to_keras_model",
    "infer_model_name",
    "keras_to_torch",
    "load_keras_weights",
    "record_from_keras_model",
    "torch_to_keras",
]


def _as_record(source: Any, model: nn.Module | None = None) -> KerasModelRecord:
    if isinstance(source, KerasModelRecord):
        return source
    if isinstance(source, str | os.PathLike):
        # A .weights.h5 holds no architecture: the torch layer table gives the class order,
        # exactly as Keras's own load_weights pairs layers with the model it loads into.
        classes = (
            [info.keras_class for info in model.layer_table]
            if isinstance(model, KerasStyleNet)
            else None
        )
        record: KerasModelRecord = keras_files.read_keras_file(source, layer_classes=classes)
        return record
    if hasattr(source, "layers") and hasattr(source, "get_weights"):
        return record_from_keras_model(source)
    raise TypeError(
        "expected a Keras model, a path to a .keras/.weights.h5/.h5 file or a KerasModelRecord; "
        f"received {type(source).__name__}"
    )


def load_keras_weights(model: nn.Module, source: Any) -> nn.Module:
    """Copy Keras weights into ``model`` and return it; on any mismatch the model is unchanged.

    ``source`` is a live Keras model, a path to a ``.keras``/``.weights.h5``/``.h5``
    file (read without TensorFlow) or a ``KerasModelRecord``::

        keras_model = keras_ref.build_model("model_cnn")
        model = torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), keras_model)
    """
    state = keras_to_torch(_as_record(source, model), model)
    current = model.state_dict()
    if set(state) != set(current):  # the table covers every parameter; buffers would show here
        raise PortingError(
            f"state dict keys differ: missing {sorted(set(current) - set(state))}, "
            f"unexpected {sorted(set(state) - set(current))}"
        )
    model.load_state_dict(state, strict=True)
    return model


def infer_model_name(record: KerasModelRecord) -> str:
    """The one registered model whose architecture the Keras record fits (checked like a port)."""
    reasons = {}
    for name in list_models():
        try:
            keras_to_torch(record, create_model(name, device="meta"))
            return name
        except PortingError as exc:
            reasons[name] = str(exc)
    detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    raise PortingError(f"{record.source}: fits none of the registered models ({detail})")


def export_keras_weights(model: nn.Module, target: Any) -> Any:
    """Write ``model``'s weights to Keras: a live Keras model, or a ``.weights.h5`` path.

    A file is written to a temporary file and renamed, so it is never half-written;
    it loads with Keras's own ``model.load_weights()``. Returns the Keras model or the path.
    """
    if isinstance(target, str | os.PathLike):
        return keras_writer.write_weights_h5(model, target)
    if hasattr(target, "layers") and hasattr(target, "set_weights"):
        return export_to_keras_model(model, target)
    raise TypeError(
        f"expected a Keras model or a path ending in .weights.h5; received {type(target).__name__}"
    )
