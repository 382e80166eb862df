"""``from_keras``: any supported Keras CNN as a native torch module with the Keras weights in it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from torch_cnn.convert.build import build_model, check_supported
from torch_cnn.convert.graph import ModelGraph, parse_model
from torch_cnn.convert.registry import ConversionError
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.porting import infer_model_name, keras_to_torch
from torch_cnn.porting.graph_weights import load_tree, tree_from_keras_model
from torch_cnn.porting.keras_config import is_model_entry
from torch_cnn.porting.records import KerasLayer, KerasModelRecord, PortingError
from torch_cnn.registry import create_model

Source = str | os.PathLike[str] | Any  # a path, or a live keras.Model


def keras_model_config(keras_model: Any) -> dict[str, Any]:
    """A live Keras model's config as a ``.keras`` file stores it (JSON: lists, no objects)."""
    import keras  # a live model means Keras is importable

    entry = keras.saving.serialize_keras_object(keras_model)
    result: dict[str, Any] = json.loads(json.dumps(entry))
    return result


def read_source(
    source: Source, isolate: bool = True
) -> tuple[dict[str, Any], dict[str, Any], str, str | None]:
    """``(model config, weights tree, where, Keras version)`` of a Keras file or live model."""
    if isinstance(source, str | os.PathLike):
        from torch_cnn.porting.keras_files import read_keras_source  # TODO: top-level import

        where = os.fspath(source)
        contents = read_keras_source(source, isolate=isolate)
        if contents.config is None or contents.weights is None:
            raise ConversionError(
                f"{where}: a {contents.format} file holds weights but no architecture; "
                "from_keras needs a .keras archive, a full-model .h5 or a live Keras model "
                "(torch_cnn.load_keras_weights(model, path) loads weights into a converted model)"
            )
        return contents.config, contents.weights, where, contents.keras_version
    if hasattr(source, "layers") and hasattr(source, "get_config"):
        name = getattr(source, "name", "?")
        import keras

        config, tree = keras_model_config(source), tree_from_keras_model(source)
        return config, tree, f"Keras model {name!r}", str(keras.__version__)
    raise TypeError(
        "from_keras expects a path to a .keras archive (or its unzipped directory), a legacy "
        f".h5 or a live keras.Model; received {type(source).__name__}"
    )


def seed_record(graph: ModelGraph, tree: Mapping[str, Any], where: str) -> KerasModelRecord | None:
    """The graph as a seed-model record when it is a plain chain without nested models."""
    layers = []
    prev = graph.input
    for gc in graph.calls:
        if gc.is_model or gc.inputs != (prev,) or len(gc.call.args) != 1:
            return None
        weights = tree.get(gc.call.name, [])
        if isinstance(weights, Mapping):
            return None
        layers.append(KerasLayer(gc.call.name, gc.call.class_name, gc.call.config, tuple(weights)))
        prev = gc.output
    if prev != graph.output:
        return None
    shape = tuple(d for d in graph.input_shape if d is not None)
    return KerasModelRecord(where, tuple(layers), shape)


def _as_seed_model(
    graph: ModelGraph, tree: Mapping[str, Any], where: str, device: Any, dtype: Any
) -> KerasStyleNet | None:
    record = seed_record(graph, tree, where)
    if record is None or None in graph.input_shape:
        return None
    try:
        name = infer_model_name(record)
    except PortingError:
        return None
    model = create_model(name, device=device, dtype=dtype)
    state = keras_to_torch(record, model)
    model.load_state_dict(state, strict=True)
    assert isinstance(model, KerasStyleNet)
    return model


def from_keras(
    source: Source,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    isolate: bool = True,
) -> nn.Module:
    """A Keras model as a native, trainable torch module with its weights, in eval mode.

    ``source``: a ``.keras`` archive (zipped, or the unzipped directory Keras can write), a
    legacy full-model ``.h5`` (Keras 3 or Keras 2 / tf.keras) or a live ``keras.Model``.
    Files are read with ``zipfile``/``h5py`` only, in a child process by default
    (``isolate=False`` reads in this one; see ``torch_cnn.porting.isolate``): TensorFlow need
    not be installed. The result takes NCHW float tensors and returns what Keras returns;
    it is made of native modules (``nn.Conv2d``, ``nn.Linear``, ...) named after the Keras
    layers. A model whose config is one of the seed architectures comes back as the
    registered seed model (``ModelCNN``/``ModelCifar10``). Anything unsupported raises
    ``ConversionError`` naming the layer and its class before anything is built; weights are
    checked layer by layer before any is copied. Call ``.train()`` to train it.

    For example::

        model = torch_cnn.from_keras("my_model.keras")
        probs = model(images)             # (N, 3, H, W) floats → what Keras's model(x) gives
    """
    config, tree, where, keras_version = read_source(source, isolate)
    if not isinstance(config, Mapping) or not is_model_entry(config):
        raise ConversionError(
            f"{where}: the file's model is a {config.get('class_name')!r}; torch_cnn converts "
            "Sequential and Functional models (a subclassed model has no config to convert)"
        )
    graph = parse_model(config, where)
    check_supported(graph, where)
    seed = _as_seed_model(graph, tree, where, device, dtype)
    if seed is not None:
        return seed.eval()
    model = build_model(graph, device=device, dtype=dtype, where=where, keras_version=keras_version)
    load_tree(model, tree, where)
    return model.eval()
