"""Reading Keras model configs: plain JSON facts that porting and conversion both need.

Pure functions over the dicts Keras serialises (``config.json`` in a ``.keras``
archive, the ``model_config`` attribute of a legacy ``.h5``): nothing a config
names is imported or evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch_cnn.porting.records import PortingError

MODEL_CLASSES = ("Functional", "Model", "Sequential")


def to_snake_case(name: str) -> str:
    """``keras.src.utils.naming.to_snake_case``: "MaxPooling2D" → "max_pooling2d"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def class_path(snake: str, k: int) -> str:
    """``saving_lib._get_unique_name``: the k-th layer of a class is ``snake``, ``snake_1``, ..."""
    return snake if k == 0 else f"{snake}_{k}"


def is_op_module(module: Any) -> bool:
    """Whether a config entry's ``module`` names a Keras op (``x + 3.0``), not a layer."""
    return isinstance(module, str) and (
        module.startswith("keras.src.ops") or module.startswith("keras.ops")
    )


def is_legacy_op(entry: Mapping[str, Any]) -> bool:
    """A Keras op in a legacy ``.h5`` config, which drops ``module`` (``{"class_name": "Add",
    "config": {"name": "add"}}``): every layer's config has ``trainable`` and ``dtype``, no op's
    (a Keras 2 nested model's has neither either: it is a model, not an op)."""
    cfg = entry.get("config")
    return (
        entry.get("module") is None
        and not is_model_entry(entry)
        and isinstance(cfg, Mapping)
        and "trainable" not in cfg
        and "dtype" not in cfg
    )


def is_model_entry(entry: Mapping[str, Any]) -> bool:
    """Whether a layer entry is itself a Sequential/Functional model (its config has layers)."""
    cfg = entry.get("config")
    return (
        entry.get("class_name") in MODEL_CLASSES
        and isinstance(cfg, Mapping)
        and isinstance(cfg.get("layers"), list)
    )


def entry_name(entry: Mapping[str, Any]) -> str:
    """A layer entry's name (its config's ``name``, else the entry's)."""
    cfg = entry.get("config")
    name = (cfg.get("name") if isinstance(cfg, Mapping) else None) or entry.get("name")
    if not isinstance(name, str) or not name:
        raise PortingError(f"a layer entry has no name: {str(entry)[:200]}")
    return name


def model_layers(model: Mapping[str, Any], where: str = "") -> list[Mapping[str, Any]]:
    """A model entry's layers as ``model.layers`` lists them, the order Keras saves them in.

    Ops are not layers; a Sequential's ``InputLayer`` is not among its layers (a
    Functional's is).
    """
    cfg = model.get("config")
    layers = cfg.get("layers") if isinstance(cfg, Mapping) else None
    if not isinstance(layers, list) or not all(isinstance(e, Mapping) for e in layers):
        raise PortingError(
            f"{where}: the model config is a {model.get('class_name')!r} without a list of layer "
            "entries; expected a Sequential or Functional model"
        )
    sequential = model.get("class_name") == "Sequential"
    return [
        e
        for e in layers
        if not is_op_module(e.get("module"))
        and not (sequential and e.get("class_name") == "InputLayer")
    ]


def class_paths(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each layer's path in a Keras 3 weights store, numbered per class in model order."""
    counts: dict[str, int] = {}
    paths = []
    for entry in entries:
        snake = to_snake_case(str(entry.get("class_name")))
        paths.append(class_path(snake, counts.get(snake, 0)))
        counts[snake] = counts.get(snake, 0) + 1
    return paths
