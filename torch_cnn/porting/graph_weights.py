"""Keras weights ⇄ a converted model (``KerasGraph``), as pure functions over a weights tree.

A weights tree holds a Keras model's variables by layer name: a layer's arrays in
Keras's order (``[kernel, bias]``, BatchNormalization's ``[gamma, beta,
moving_mean, moving_variance]``), or, for a model nested inside the model, the
tree of that model. Every file format and a live Keras model read into one;
the ``WeightMap`` rows each converter declared say where each array goes in
torch and how its layout changes. Everything is checked (names, counts, dtypes,
shapes) before a state dict is returned, so a failed port changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch

from torch_cnn.models.graph import KerasGraph, check_keras_arrays
from torch_cnn.porting.records import PortingError

WeightsTree = dict[str, Union[list[np.ndarray], "WeightsTree"]]


def _layers_with_weights(model: KerasGraph) -> dict[str, Any]:
    """Keras layer name → the node that owns its weights, or the nested KerasGraph."""
    out: dict[str, Any] = {}
    for node in model.nodes:
        module = model.get_submodule(node.attr)
        if isinstance(module, KerasGraph):
            out.setdefault(node.name, module)
        elif node.weights:
            out.setdefault(node.name, node)
    return out


def state_from_tree(
    model: KerasGraph, tree: Mapping[str, Any], where: str, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """A state dict (CPU tensors in the source's dtype) for ``model`` from a weights tree.

    Reads ``model``, never changes it. Layers the tree has weights for that the model lacks,
    and layers of the model the tree has no weights for, are errors naming them.
    """
    owners = _layers_with_weights(model)
    extra = sorted(
        name for name, value in tree.items() if name not in owners and _holds_arrays(value)
    )
    if extra:
        raise PortingError(
            f"{where}: the source has weights for layers {extra}, which model "
            f"{model.name!r} does not have (its layers with weights: {sorted(owners)})"
        )
    state: dict[str, torch.Tensor] = {}
    for name, owner in owners.items():
        if name not in tree:
            raise PortingError(
                f"{where}: no weights for Keras layer {name!r} of model {model.name!r}; the "
                f"source has weights for {sorted(n for n, v in tree.items() if _holds_arrays(v))}"
            )
        value = tree[name]
        if isinstance(owner, KerasGraph):
            if not isinstance(value, Mapping):
                raise PortingError(
                    f"{where}: Keras layer {name!r} is a nested model; the source holds "
                    f"{len(value)} arrays for it, not its layers"
                )
            attr = next(n.attr for n in model.nodes if n.name == name)
            state |= state_from_tree(owner, value, where, f"{prefix}{attr}.")
            continue
        if isinstance(value, Mapping):
            raise PortingError(
                f"{where}: Keras layer {name!r} ({owner.class_name}) is a single layer; the "
                "source holds a nested model's weights for it"
            )
        label = f"{name!r} ({owner.class_name})"
        try:
            check_keras_arrays(where, label, owner.weights, value)
        except ValueError as exc:
            raise PortingError(str(exc)) from exc
        module = model.get_submodule(owner.attr)
        own = dict(module.named_parameters()) | dict(module.named_buffers())
        for wm, array in zip(owner.weights, value, strict=True):
            t = torch.from_numpy(np.array(wm.to_torch(native(array)), order="C"))
            target = own.get(wm.torch_name)
            if target is None or tuple(target.shape) != tuple(t.shape):
                got = None if target is None else tuple(target.shape)
                raise PortingError(
                    f"{where}: Keras layer {label} {wm.keras_name} {tuple(np.shape(array))} "
                    f"becomes {tuple(t.shape)} in torch; torch module {owner.attr!r} "
                    f"({type(module).__name__}) has {wm.torch_name} {got}"
                )
            state[f"{prefix}{owner.attr}.{wm.torch_name}"] = t
    return state


def native(array: Any) -> np.ndarray:
    """``array`` in the machine's byte order (a big-endian float32 file reads bit-identically)."""
    a = np.asarray(array)
    return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))


def _holds_arrays(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_holds_arrays(v) for v in value.values())
    return len(value) > 0


def load_tree(model: KerasGraph, tree: Mapping[str, Any], where: str) -> KerasGraph:
    """Copy a weights tree into ``model`` (cast to its dtype and device); unchanged on error.

    Every parameter must come from the tree: a parameter no converter mapped would keep
    torch's random initialisation, which is never what a port should do.
    """
    state = state_from_tree(model, tree, where)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - set(state))
    if missing:
        raise PortingError(f"{where}: no Keras weights map to torch parameters {missing}")
    current = model.state_dict()
    for key in state:
        if current[key].device.type == "meta":
            raise PortingError(
                f"{where}: model {model.name!r} is on the meta device (no storage); create it "
                "on a real device before loading weights"
            )
    model.load_state_dict(state, strict=False)
    return model


def tree_from_model(model: KerasGraph) -> WeightsTree:
    """``model``'s weights as a Keras weights tree (NumPy arrays in Keras's layout)."""
    tree: WeightsTree = {}
    for name, owner in _layers_with_weights(model).items():
        if isinstance(owner, KerasGraph):
            tree[name] = tree_from_model(owner)
            continue
        module = model.get_submodule(owner.attr)
        own = dict(module.named_parameters()) | dict(module.named_buffers())
        tree[name] = [
            np.array(wm.to_keras(own[wm.torch_name].detach().cpu().numpy()), copy=True, order="C")
            for wm in owner.weights
        ]
    return tree


def tree_from_keras_model(keras_model: Any) -> WeightsTree:
    """A live Keras model's weights as a tree (duck-typed: Keras need not be importable)."""
    tree: WeightsTree = {}
    for layer in keras_model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if hasattr(layer, "layers") and hasattr(layer, "get_config") and _is_model(layer):
            tree[layer.name] = tree_from_keras_model(layer)
        else:
            tree[layer.name] = [np.asarray(w) for w in layer.get_weights()]
    return tree


def _is_model(layer: Any) -> bool:
    return type(layer).__name__ in ("Functional", "Sequential", "Model")


def set_keras_model_weights(keras_model: Any, tree: Mapping[str, Any], where: str) -> None:
    """Set a live Keras model's weights from a tree (checked against its shapes first)."""
    plan: list[tuple[Any, Sequence[np.ndarray]]] = []

    def collect(km: Any, sub: Mapping[str, Any]) -> None:
        for layer in km.layers:
            if type(layer).__name__ == "InputLayer":
                continue
            value = sub.get(layer.name, [])
            if _is_model(layer):
                collect(layer, value if isinstance(value, Mapping) else {})
                continue
            current = layer.get_weights()
            if len(current) != len(value) or any(
                tuple(c.shape) != tuple(np.shape(v)) for c, v in zip(current, value, strict=False)
            ):
                raise PortingError(
                    f"{where}: Keras layer {layer.name!r} has weights "
                    f"{[tuple(c.shape) for c in current]}; torch gives "
                    f"{[tuple(np.shape(v)) for v in value]}"
                )
            if current:
                plan.append((layer, [np.asarray(v).astype(current[0].dtype) for v in value]))

    collect(keras_model, tree)
    for layer, arrays in plan:
        layer.set_weights(arrays)
