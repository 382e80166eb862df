"""Resume from Keras: the optimizer a Keras model was compiled with, and its state, in torch.

A ``.keras`` archive saved after ``model.compile(...)`` and training carries its optimizer
(``config.json`` → ``compile_config`` → ``optimizer``) and the optimizer's variables
(``model.weights.h5`` → ``optimizer/vars/<i>``); a live compiled Keras model has both as
``model.optimizer``. ``optimizer_from_keras(model, source)`` builds the same optimizer over a
converted model's parameters (``torch_cnn.optim``'s Keras optimizers) and loads that state,
so training continues exactly where Keras stopped.

Keras's optimizer variables are ``iterations``, ``learning_rate``, then per-variable slots in
``model.trainable_variables`` order (see ``torch_cnn.optim.keras_state``). That order is
Keras's ``Layer.trainable_variables`` (``keras/src/layers/layer.py``): the layers in
``model.layers`` order (the config's, which for a Functional model is not always the order of
the calls), each layer's own trainable variables (kernel, bias; BatchNormalization's gamma,
beta; never its moving statistics), a nested model's recursively, and nothing from a layer or
model with ``trainable=False``. ``keras_trainable_variables`` derives it from a converted
model's config and ``WeightMap`` rows; each slot takes its variable's ``to_torch`` layout
transform.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from torch_cnn.convert.registry import ConversionError
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.models.graph import GraphNode, KerasGraph
from torch_cnn.optim import KerasOptimizer, load_keras_optimizer_state, optimizer_from_keras_config
from torch_cnn.porting.keras_config import entry_name, is_model_entry, model_layers
from torch_cnn.porting.transforms import KERNEL_TO_KERAS, KERNEL_TO_TORCH

__all__ = [
    "KerasVariable",
    "keras_trainable_variables",
    "optimizer_from_keras",
    "optimizer_from_keras_state",
    "read_keras_optimizer",
]

Transform = Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


@dataclass(frozen=True)
class KerasVariable:
    """One of Keras's ``model.trainable_variables`` and the torch parameter it became."""

    path: str  # Keras's variable path: "block/conv2d/kernel"
    param: nn.Parameter
    shape: tuple[int, ...]  # in Keras's layout
    to_torch: Transform = _same
    to_keras: Transform = _same


def keras_trainable_variables(model: nn.Module) -> list[KerasVariable]:
    """``model``'s parameters in Keras's ``model.trainable_variables`` order, with their layouts.

    ``model`` is a converted model (``KerasGraph``) or a seed model (``KerasStyleNet``).
    Frozen layers (``trainable=False`` in the Keras config) and non-trainable variables
    (moving statistics, buffers in torch) are left out, as Keras leaves them out.
    """
    if isinstance(model, KerasGraph):
        return _graph_variables(model, "")
    if isinstance(model, KerasStyleNet):
        return _seed_variables(model)
    raise TypeError(
        "expected a converted Keras model (torch_cnn.from_keras) or a seed model; "
        f"received {type(model).__name__}"
    )


def _graph_variables(model: KerasGraph, prefix: str) -> list[KerasVariable]:
    owners: dict[str, GraphNode] = {}
    for n in model.nodes:  # a shared layer: its weights sit on its first call
        if n.name not in owners and (
            n.weights or isinstance(model.get_submodule(n.attr), KerasGraph)
        ):
            owners[n.name] = n
    out: list[KerasVariable] = []
    for entry in model_layers(model.keras_config, model.name):
        name = entry_name(entry)
        node = owners.get(name)
        if node is None or not node.trainable:
            continue
        module = model.get_submodule(node.attr)
        if isinstance(module, KerasGraph):
            if not is_model_entry(entry):  # pragma: no cover - the builder made it from this entry
                raise ConversionError(f"{model.name}: layer {name!r} is not a model in the config")
            out += _graph_variables(module, f"{prefix}{name}/")
            continue
        params = dict(module.named_parameters())
        for wm in node.weights:
            p = params.get(wm.torch_name)
            if p is None:  # a buffer: a Keras variable with trainable=False (moving_mean)
                continue
            out.append(
                KerasVariable(
                    f"{prefix}{name}/{wm.keras_name}", p, wm.shape, wm.to_torch, wm.to_keras
                )
            )
    return out


def _seed_variables(model: KerasStyleNet) -> list[KerasVariable]:
    from torch_cnn.porting.transforms import _flatten_chw  # the seed models' Flatten → Dense rows

    chw = _flatten_chw(model)
    out: list[KerasVariable] = []
    for info, module in model.keras_layers():
        if info.keras_class not in KERNEL_TO_TORCH:
            continue
        weight, bias = module.get_parameter("weight"), module.get_parameter("bias")
        c = chw.get(info.module)

        def to_torch(a: np.ndarray, cls: str = info.keras_class, c: Any = c) -> np.ndarray:
            return KERNEL_TO_TORCH[cls](a, c)

        def to_keras(a: np.ndarray, cls: str = info.keras_class, c: Any = c) -> np.ndarray:
            return KERNEL_TO_KERAS[cls](a, c)

        shape = to_keras(np.zeros(tuple(weight.shape), dtype=np.float32)).shape
        out.append(KerasVariable(f"{info.module}/kernel", weight, shape, to_torch, to_keras))
        out.append(KerasVariable(f"{info.module}/bias", bias, tuple(bias.shape)))
    return out


def optimizer_from_keras_state(
    model: nn.Module,
    config: Mapping[str, Any] | str,
    variables: Sequence[np.ndarray] | None = None,
) -> KerasOptimizer:
    """The Keras optimizer ``config`` describes, over ``model``'s trainable parameters, with
    Keras's saved ``variables`` loaded (``None``: a fresh optimizer, as Keras's before its
    first step).

    ``config``: a compile config's ``optimizer`` entry (``{"class_name": "Adam", "config":
    {...}}``) or a Keras optimizer string. ``variables``: Keras's ``optimizer.variables``,
    as ``optimizer/vars/0 … n-1`` hold them. Only two (``iterations`` and the learning rate:
    an optimizer Keras has not built yet) sets those and starts every slot at zero, as Keras
    would. Parameters the Keras model does not train (frozen layers) stay out of the
    optimizer. Counts and every shape are checked before anything changes (``ValueError``).
    """
    trainable = keras_trainable_variables(model)
    params = [v.param for v in trainable]
    optimizer = optimizer_from_keras_config(config, params)
    if variables is None:
        return optimizer
    variables = list(variables)
    if len(variables) == 2 and trainable:
        layout = optimizer.keras_slots(optimizer.param_groups[0])
        dtype = np.asarray(variables[1]).dtype
        variables += [
            np.zeros(v.shape, dtype) for block in layout for v in trainable for _ in block
        ]
    try:
        load_keras_optimizer_state(optimizer, variables, params, [v.to_torch for v in trainable])
    except ValueError as exc:
        paths = ", ".join(v.path for v in trainable[:6]) + (", …" if len(trainable) > 6 else "")
        raise ValueError(
            f"the Keras optimizer state does not fit model {getattr(model, 'name', '?')!r} "
            f"({len(trainable)} trainable variables: {paths}): {exc}"
        ) from exc
    return optimizer


def optimizer_from_keras(model: nn.Module, source: Any) -> KerasOptimizer:
    """The optimizer a compiled Keras model carries, with its state, over ``model``.

    ``source``: a live compiled ``keras.Model`` (``model.optimizer``; ``keras.saving.load_model``
    restores a ``.keras`` file's optimizer there), or a path to a ``.keras`` archive saved after
    ``compile`` (read with ``torch_cnn.porting.keras_files.read_keras_source``, no TensorFlow).
    ``model`` is the converted model of the same Keras model (``torch_cnn.from_keras``).
    A source without a compiled optimizer raises ``ValueError`` (``read_keras_optimizer``
    tells beforehand).

    For example::

        keras_model.fit(x, y, epochs=3)                  # Keras trains a while
        model = torch_cnn.from_keras(keras_model)        # the same weights, in torch
        optimizer = optimizer_from_keras(model, keras_model)
        torch_cnn.fit(model, (images, labels), optimizer=optimizer, epochs=3)  # continues
    """
    saved = read_keras_optimizer(source)
    if saved is None:
        raise ValueError(
            f"{_where(source)} carries no optimizer (not compiled, or saved without one); "
            "pass an optimizer of your own to fit"
        )
    return optimizer_from_keras_state(model, *saved)


def read_keras_optimizer(source: Any) -> tuple[Any, list[np.ndarray] | None] | None:
    """``(optimizer config, optimizer variables)`` a Keras source carries, or ``None``.

    ``source`` as ``optimizer_from_keras`` takes it. The variables are ``None`` where the
    source records the optimizer's config but not its state.
    """
    if isinstance(source, str | os.PathLike):
        return _file_optimizer(source)
    if hasattr(source, "layers") and hasattr(source, "get_config"):
        return _live_optimizer(source)
    raise TypeError(
        "expected a compiled keras.Model or a path to a .keras archive; "
        f"received {type(source).__name__}"
    )


def _where(source: Any) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return f"Keras model {getattr(source, 'name', '?')!r}"


def _live_optimizer(keras_model: Any) -> tuple[dict[str, Any], list[np.ndarray]] | None:
    optimizer = getattr(keras_model, "optimizer", None)
    if optimizer is None:
        return None
    import keras  # a live model means Keras is importable

    config: dict[str, Any] = keras.saving.serialize_keras_object(optimizer)
    return config, [np.asarray(v) for v in optimizer.variables]


def _file_optimizer(path: str | os.PathLike[str]) -> tuple[Any, list[np.ndarray] | None] | None:
    from torch_cnn.porting.keras_files import read_keras_source

    contents = read_keras_source(path)
    compile_config = contents.compile_config or {}
    saved = contents.optimizer or {}
    entry = saved.get("config") or compile_config.get("optimizer")
    if entry is None:
        return None
    variables = saved.get("variables")
    return entry, None if variables is None else [np.asarray(v) for v in variables]
