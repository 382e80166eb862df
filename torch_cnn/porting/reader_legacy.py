"""Legacy HDF5 files (``model.save("m.h5")``) and Keras 2 ``save_weights`` files into trees.

Part of the standalone reader (``reader.py``), after
``keras/src/legacy/saving/legacy_h5_format.py``: ``model_config`` (JSON) at the root, then
``model_weights`` (or the root, for a Keras 2 weights file) with ``layer_names`` (maybe
chunked as ``layer_names0``, ``layer_names1``, ...) and one group per layer whose
``weight_names`` list its datasets in order. A nested model is one group listing all its
variables (trainable first).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from torch_cnn.porting.keras_config import entry_name, is_legacy_op, is_model_entry, model_layers
from torch_cnn.porting.reader_h5 import H5File
from torch_cnn.porting.reader_limits import Budget, parse_json
from torch_cnn.porting.reader_store import Tree

__all__ = ["Legacy", "read_keras2_weights", "read_legacy"]

Layers = list[tuple[str, list[str], list[np.ndarray]]]  # (name, weight names, arrays)


@dataclass
class Legacy:
    """What a legacy file holds: its config (None for Keras 2 weights) and layers."""

    config: dict[str, Any] | None
    compile_config: dict[str, Any] | None
    keras_version: str | None
    layers: Layers
    weights: Tree | None


def legacy_layers(h5: H5File, group: h5py.Group) -> list[tuple[str, list[str], list[np.ndarray]]]:
    """``(layer name, weight names, arrays)`` in ``layer_names`` order (``load_weights_from_hdf5_group``)."""
    out = []
    for name in h5.names(group, "layer_names"):
        layer = h5.get(group, name, h5py.Group)
        weight_names = h5.names(layer, "weight_names")
        arrays = [h5.array(h5.get(layer, w, h5py.Dataset), f"layer {name!r}") for w in weight_names]
        out.append((name, weight_names, arrays))
    if h5.has(group, "top_level_model_weights"):
        top = h5.get(group, "top_level_model_weights", h5py.Group)
        if h5.names(top, "weight_names"):
            raise h5.fail(top.name, "the model's own variables (not a layer's); not read")
    return out


def read_legacy(h5: H5File, budget: Budget) -> Legacy:
    """``legacy_h5_format.load_model_from_hdf5``: ``model_config``, then ``model_weights``."""
    f = h5.file
    config = parse_json(h5.text(f, "model_config") or "", budget, "attribute 'model_config'")
    training = h5.text(f, "training_config")
    compile_config = parse_json(training, budget, "training_config") if training else None
    if not isinstance(config, dict) or not is_model_entry(config):
        raise budget.fail("attribute 'model_config'", "not a Sequential or Functional model")
    group = h5.get(f, "model_weights", h5py.Group) if h5.has(f, "model_weights") else f
    version = h5.text(group, "keras_version") or h5.text(f, "keras_version")
    layers = legacy_layers(h5, group)
    entries = _layers(config, budget)
    inputs = {entry_name(e) for e in entries if e.get("class_name") == "InputLayer"}
    entries = [e for e in entries if entry_name(e) not in inputs]
    stored = [layer for layer in layers if layer[0] not in inputs]
    if [name for name, _, _ in stored] != [entry_name(e) for e in entries]:
        raise budget.fail(
            "model_weights",
            f"layer_names {[name for name, _, _ in stored][:20]} do not match the layers of "
            f"model_config {[entry_name(e) for e in entries][:20]}",
        )
    tree = {
        entry_name(e): _legacy_arrays(e, weight_names, arrays, budget)
        for e, (_, weight_names, arrays) in zip(entries, stored, strict=True)
    }
    compile_dict = compile_config if isinstance(compile_config, dict) else None
    return Legacy(config, compile_dict, version, layers, tree)


def _layers(model: Mapping[str, Any], budget: Budget) -> list[Mapping[str, Any]]:
    """``model.layers`` as a legacy config lists them: its ops carry no ``module`` to tell."""
    return [e for e in model_layers(model, budget.where) if not is_legacy_op(e)]


def _legacy_arrays(
    entry: Mapping[str, Any], weight_names: list[str], arrays: list[np.ndarray], budget: Budget
) -> Any:
    """A layer's arrays, or for a nested model its tree: the one group regrouped per layer.

    A nested model's ``weight_names`` list all its variables, trainable first
    (``legacy_h5_format._legacy_weights``); each is claimed by the layer whose name comes
    just before the variable's own (``block/conv2d/kernel``, Keras 2 ``conv2d/kernel:0``),
    keeping their order, so BatchNormalization's moving statistics rejoin its gamma and beta.
    """
    if not is_model_entry(entry):
        return arrays
    leaves: list[tuple[tuple[str, ...], list[np.ndarray]]] = []
    tree = _skeleton(entry, (), leaves, budget)
    for weight, array in zip(weight_names, arrays, strict=True):
        scope = weight.split("/")[:-1]
        found = [leaf for leaf in leaves if scope and leaf[0][-1] == scope[-1]]
        if len(found) > 1:  # the same name in two nested models: the longer scope decides
            found = [
                leaf
                for leaf in found
                if _suffix(leaf[0], scope) == max(_suffix(x[0], scope) for x in found)
            ]
        if len(found) != 1:
            raise budget.fail(
                f"layer {entry_name(entry)!r}",
                f"weight {weight!r} belongs to {len(found)} of its layers "
                f"{['/'.join(p) for p, _ in leaves][:20]}; expected exactly one",
            )
        found[0][1].append(array)
    return tree


def _skeleton(
    model: Mapping[str, Any],
    scope: tuple[str, ...],
    leaves: list[tuple[tuple[str, ...], list[np.ndarray]]],
    budget: Budget,
) -> Tree:
    if len(scope) > budget.limits.max_depth:
        raise budget.fail("the config", "models nested too deeply")
    tree: Tree = {}
    for entry in _layers(model, budget):
        name = entry_name(entry)
        if is_model_entry(entry):
            tree[name] = _skeleton(entry, (*scope, name), leaves, budget)
        elif entry.get("class_name") != "InputLayer":
            tree[name] = []
            leaves.append(((*scope, name), tree[name]))
    return tree


def _suffix(path: tuple[str, ...], scope: list[str]) -> int:
    n = 0
    while n < min(len(path), len(scope)) and path[-1 - n] == scope[-1 - n]:
        n += 1
    return n


def read_keras2_weights(h5: H5File, config: dict[str, Any] | None, budget: Budget) -> Legacy:
    """Keras 2 ``save_weights("w.h5")``: layers in file order; a config pairs them as Keras does."""
    f = h5.file
    group = f if "layer_names" in f.attrs else h5.get(f, "model_weights", h5py.Group)
    layers = legacy_layers(h5, group)
    tree = None
    if config is not None and is_model_entry(config):
        tree = _pair_keras2(layers, config, budget)
    return Legacy(None, None, h5.text(group, "keras_version"), layers, tree)


def _pair_keras2(
    layers: list[tuple[str, list[str], list[np.ndarray]]],
    config: Mapping[str, Any],
    budget: Budget,
) -> Tree:
    """By name when the file's layers with weights are the config's, else position for position.

    Keras (``load_weights_from_hdf5_group``) pairs the model's layers with weights with the
    file's, in order; a reader without the layers' classes cannot tell which config layers
    have weights, so it pairs every layer when the names differ and the counts agree.
    """
    entries = _layers(config, budget)
    names = [entry_name(e) for e in entries]
    by_name = {name: (wn, arrays) for name, wn, arrays in layers}
    if not all(name in names for name, _, arrays in layers if arrays):
        if len(layers) != len(entries):
            raise budget.fail(
                "layer_names",
                f"{len(layers)} layers {[n for n, _, _ in layers][:20]} cannot be paired with "
                f"the config's {len(entries)} {names[:20]}; pair keras2_layers by the layers "
                "with weights",
            )
        by_name = {name: (wn, arrays) for name, (_, wn, arrays) in zip(names, layers, strict=True)}
    tree: Tree = {}
    for entry, name in zip(entries, names, strict=True):
        weight_names, arrays = by_name.get(name, ([], []))
        if entry.get("class_name") == "InputLayer":
            if arrays:
                raise budget.fail(f"layer {name!r}", "an InputLayer with weights")
            continue
        tree[name] = _legacy_arrays(entry, weight_names, arrays, budget)
    return tree
