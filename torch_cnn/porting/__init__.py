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
from torch_cnn.models.graph import KerasGraph
from torch_cnn.porting import keras_files, keras_writer
from torch_cnn.porting.graph_weights import (
    load_tree,
    set_keras_model_weights,
    tree_from_keras_model,
    tree_from_model,
)
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


def _graph_tree(model: KerasGraph, source: Any) -> tuple[dict[str, Any], str]:
    """A converted model's weights tree from any Keras source (files in model.layers order)."""
    if isinstance(source, str | os.PathLike):
        contents = keras_files.read_keras_source(source, config=model.keras_config)
        if contents.weights is None:
            raise PortingError(f"{os.fspath(source)}: no weights that fit {model.name!r}")
        return contents.weights, os.fspath(source)
    if hasattr(source, "layers") and hasattr(source, "get_weights"):
        return tree_from_keras_model(source), f"Keras model {getattr(source, 'name', '?')!r}"
    if isinstance(source, dict):
        return source, "weights tree"
    raise TypeError(
        "expected a Keras model, a path to a .keras/.weights.h5/.h5 file or a weights tree; "
        f"received {type(source).__name__}"
    )


def load_keras_weights(model: nn.Module, source: Any) -> nn.Module:
    """Copy Keras weights into ``model`` and return it; on any mismatch the model is unchanged.

    ``model`` is a seed model or a converted one (``torch_cnn.from_keras``). ``source`` is a
    live Keras model, a path to a ``.keras``/``.weights.h5``/``.h5`` file (read without
    TensorFlow, including Keras 2's weights-only ``.h5``) or a ``KerasModelRecord``::

        keras_model = keras_ref.build_model("model_cnn")
        model = torch_cnn.load_keras_weights(torch_cnn.create_model("model_cnn"), keras_model)
    """
    if isinstance(model, KerasGraph):
        tree, where = _graph_tree(model, source)
        return load_tree(model, tree, where)
    _refuse_meta(model)
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


def _refuse_meta(model: nn.Module) -> None:
    p = next(model.parameters(), None)
    if p is not None and p.device.type == "meta":
        raise PortingError(
            f"{type(model).__name__} is on the meta device (no storage): loading weights into "
            "it would do nothing; create it on a real device first"
        )


def export_keras_weights(model: nn.Module, target: Any) -> Any:
    """Write ``model``'s weights to Keras: a live Keras model, or a ``.weights.h5`` path.

    A file is written to a temporary file and renamed, so it is never half-written;
    it loads with Keras's own ``model.load_weights()``. Returns the Keras model or the path.
    """
    if isinstance(model, KerasGraph):
        tree = tree_from_model(model)
        if isinstance(target, str | os.PathLike):
            return keras_writer.write_weights_tree(
                tree, model.keras_config, target, model_name=model.name
            )
        if hasattr(target, "layers") and hasattr(target, "set_weights"):
            set_keras_model_weights(target, tree, f"Keras model {getattr(target, 'name', '?')!r}")
            return target
        raise TypeError(
            "expected a Keras model or a path ending in .weights.h5; "
            f"received {type(target).__name__}"
        )
    if isinstance(target, str | os.PathLike):
        return keras_writer.write_weights_h5(model, target)
    if hasattr(target, "layers") and hasattr(target, "set_weights"):
        return export_to_keras_model(model, target)
    raise TypeError(
        f"expected a Keras model or a path ending in .weights.h5; received {type(target).__name__}"
    )
