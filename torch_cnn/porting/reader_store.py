"""Keras 3 weight stores (``.keras``, ``.weights.h5``, shards, npz) into weights trees.

Part of the standalone reader (``reader.py``). ``saving_lib._save_container_state`` stores
the k-th layer of a class at ``layers/<snake case>_<k>`` in ``model.layers`` order (ops are
not layers; a Sequential's InputLayer is not among its layers, a Functional's is), a nested
model's layers under its own ``layers/``; every layer gets a ``vars`` group whose ``name``
attribute is the layer's name (Keras 3.15; older releases wrote groups only for layers with
variables, and no names). ``H5IOStore.get`` also accepts tf.keras 2.13's
``_layer_checkpoint_dependencies`` in place of ``layers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from torch_cnn.porting.keras_config import class_paths, entry_name, is_model_entry, model_layers
from torch_cnn.porting.reader_h5 import H5File, class_of_path
from torch_cnn.porting.reader_limits import Budget

__all__ = [
    "STORE_KEYS",
    "Raw",
    "Tree",
    "class_key",
    "in_order",
    "read_store",
    "store_parts",
    "tree_from_store",
]

STORE_KEYS = ("layers", "_layer_checkpoint_dependencies")  # Keras 3; tf.keras 2.13
Tree = dict[str, Any]  # layer name → list[np.ndarray] | Tree
Raw = dict[str, list[np.ndarray]]  # "layers/sequential/layers/conv2d" → arrays


def read_store(h5: H5File) -> tuple[Raw, dict[str, str]]:
    """Every ``vars`` group of a Keras 3 store: ``(path → arrays, path → stored layer name)``."""
    parts, names = store_parts(h5)
    return {path: in_order(h5, path, got) for path, got in parts.items()}, names


def store_parts(h5: H5File) -> tuple[dict[str, dict[int, np.ndarray]], dict[str, str]]:
    parts: dict[str, dict[int, np.ndarray]] = {}
    names: dict[str, str] = {}
    for path, group in h5.vars_groups(h5.file):
        name = h5.text(group, "name")
        if name is not None:
            names[path] = name
        place = f"layer {name or path!r} ({class_of_path(path)}) at {path or '/'}"
        parts[path] = h5.vars_arrays(group, place)
    return parts, names


def in_order(h5: H5File | Budget, path: str, got: dict[int, np.ndarray]) -> list[np.ndarray]:
    if sorted(got) != list(range(len(got))):
        raise h5.fail(
            f"{path or '/'}/vars", f"holds variables {sorted(got)[:10]}; expected 0, 1, ..."
        )
    return [got[i] for i in range(len(got))]


def class_key(path: str) -> str:
    """``layers/sequential/layers/conv2d`` → ``sequential/conv2d``."""
    return "/".join(p for p in path.split("/") if p not in STORE_KEYS)


def tree_from_store(
    raw: Raw, names: dict[str, str], config: dict[str, Any], budget: Budget
) -> Tree:
    """``saving_lib._load_state``: a layer's variables at its class path, nested models inside."""
    key = next((k for k in STORE_KEYS if any(p.startswith(f"{k}/") for p in raw)), "layers")
    claimed: set[str] = set()
    tree = _subtree(raw, names, config, "", key, claimed, budget)
    for path in ("", *(p for p in raw if p not in claimed)):
        if raw.get(path):
            raise budget.fail(
                "the weights",
                f"{path or 'the model itself'} holds {len(raw[path])} variables that no layer "
                "of the config claims (a file for another architecture?)",
            )
    return tree


def _subtree(
    raw: Raw,
    names: dict[str, str],
    model: Mapping[str, Any],
    prefix: str,
    key: str,
    claimed: set[str],
    budget: Budget,
) -> Tree:
    entries = model_layers(model, budget.where)
    if len(entries) > budget.limits.max_layers or prefix.count("/") > 2 * budget.limits.max_depth:
        raise budget.fail("the config", f"{len(entries)} layers, nested {prefix!r}; refused")
    tree: Tree = {}
    for entry, path in zip(entries, class_paths(entries), strict=True):
        full, name, cls = f"{prefix}{key}/{path}", entry_name(entry), entry.get("class_name")
        claimed.add(full)
        place = f"layer {name!r} ({cls}) at {full}"
        stored = names.get(full)
        if stored is not None and stored != name:
            raise budget.fail(
                place, f"is named {stored!r} in the weights; the file is inconsistent"
            )
        if name in tree:
            raise budget.fail(place, "a second layer of that name in one model")
        if is_model_entry(entry):
            if raw.get(full):
                raise budget.fail(place, "a nested model with variables of its own; not read")
            tree[name] = _subtree(raw, names, entry, f"{full}/", key, claimed, budget)
        elif cls == "InputLayer":
            if raw.get(full):
                raise budget.fail(place, "an InputLayer with variables")
        else:  # a layer's own sublayers (an RNN's cell) follow its own variables
            inner = sorted(p for p in raw if p.startswith(f"{full}/"))
            claimed.update(inner)
            tree[name] = [*raw.get(full, []), *(a for p in inner for a in raw[p])]
    return tree
