"""Writing ``.weights.h5`` files as Keras's own ``save_weights`` writes them, without Keras.

The layout is ``saving_lib``'s (see ``reader_store``): a root ``vars`` group named after the
model, then for each layer of ``model.layers`` in order ``layers/<class path>/vars`` with
attribute ``name`` and datasets ``0, 1, ...`` in the layer's variable order; a nested model
gets its own ``vars`` and its layers under ``layers/<class path>/layers/``; a Functional
model's layers start with its InputLayer. The HDF5 file is built in memory (HDF5's
``core`` driver, no backing store) and its bytes written with plain file I/O to a temporary file renamed over
the target (``torch_cnn._io.atomic_write``): a full disk or a crash leaves the old file or
the whole new one, and libhdf5 never writes to disk itself.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from torch import nn

from torch_cnn._io import atomic_write
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.porting.keras_config import (
    class_path,
    class_paths,
    entry_name,
    is_model_entry,
    model_layers,
    to_snake_case,
)
from torch_cnn.porting.keras_files import WEIGHTS_SUFFIX
from torch_cnn.porting.records import PortingError
from torch_cnn.porting.transforms import torch_to_keras

__all__ = ["write_weights_h5", "write_weights_tree"]


def _check_suffix(file: Path) -> None:
    if not file.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"The filename must end in `{WEIGHTS_SUFFIX}`. Received: path={file}")


def _write_bytes(file: Path, build: Callable[[h5py.File], None]) -> None:
    """``build(h5py.File)`` on an in-memory file, then its bytes written atomically.

    HDF5's ``core`` driver without a backing store lays the file out exactly as its default
    driver does on disk (h5py's Python file-object driver would not), so the bytes equal
    those Keras's ``save_weights`` writes for the same groups.
    """
    f = h5py.File(f"{file.name}.in-memory", "w", driver="core", backing_store=False)
    try:
        build(f)
        f.flush()
        data = f.id.get_file_image()
    finally:
        f.close()
    atomic_write(file, lambda tmp: Path(tmp).write_bytes(data))


def write_weights_h5(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    layer_names: Sequence[str] | None = None,
    model_name: str | None = None,
    input_name: str = "input_layer",
    keras_api: str | None = None,
) -> Path:
    """Write a seed model's weights as the ``.weights.h5`` Keras's ``save_weights`` writes.

    Mirrors ``saving_lib.save_weights_only``: a root ``vars`` group named after
    the model, then for each layer in order ``layers/<class path>/vars`` with
    attribute ``name`` and datasets ``0`` (kernel), ``1`` (bias); a Functional
    model also writes ``layers/input_layer``. ``layer_names`` and
    ``model_name`` (and a Functional model's ``input_name``) only fill the
    ``name`` attributes, which Keras does not read back; they default to what
    a fresh Keras session calls the layers.
    ``keras_api`` ("functional" or "sequential") defaults to the model's ``keras_api``.
    The file appears whole or not at all (module docstring).

    For example::

        write_weights_h5(model, "model_cnn.weights.h5")
        keras_ref.build_model("model_cnn").load_weights("model_cnn.weights.h5")
    """
    file = Path(os.fspath(path))
    _check_suffix(file)
    weights = torch_to_keras(model)  # TypeError for anything but a torch_cnn model
    assert isinstance(model, KerasStyleNet)
    classes = [info.keras_class for info in model.layer_table]
    api = keras_api or model.keras_api
    if api not in ("functional", "sequential"):
        raise ValueError(f"keras_api must be 'functional' or 'sequential'. Received: {api!r}")
    counts: dict[str, int] = defaultdict(int)
    paths = []
    for cls in classes:
        snake = to_snake_case(cls)
        paths.append(class_path(snake, counts[snake]))
        counts[snake] += 1
    names = list(layer_names) if layer_names is not None else paths
    if len(names) != len(classes):
        raise ValueError(
            f"layer_names must name each of the {len(classes)} Keras layers of {model.name!r} "
            f"({classes}). Received: {len(names)} names"
        )
    layers = zip(paths, names, weights, strict=True)
    _write_bytes(file, lambda f: _write_store(f, api, model_name or api, input_name, layers))
    return file


def _write_store(
    f: h5py.File,
    api: str,
    model_name: str,
    input_name: str,
    layers: Iterator[tuple[str, str, list[np.ndarray]]],
) -> None:
    """Groups in the order ``saving_lib._save_state`` creates them (the model, then its layers)."""
    f.create_group("vars").attrs["name"] = model_name
    if api == "functional":  # Functional.layers starts with its InputLayer
        f.create_group("layers/input_layer").create_group("vars").attrs["name"] = input_name
    for path, name, arrays in layers:
        group = f.create_group(f"layers/{path}").create_group("vars")
        group.attrs["name"] = name
        for i, array in enumerate(arrays):
            group[str(i)] = array


def write_weights_tree(
    tree: Mapping[str, Any],
    config: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    model_name: str | None = None,
) -> Path:
    """Write a weights tree as the ``.weights.h5`` Keras 3 writes for the model ``config``.

    ``tree``: layer name → arrays in Keras's variable order, or a nested model's tree
    (``graph_weights.tree_from_model``); layers it omits are written without variables,
    as Keras writes weightless layers. ``config`` is the model entry (``config.json``'s).
    ``model_name`` fills the root ``name`` attribute (default: the config's name), which
    Keras does not read back. ``keras_model.load_weights(path)`` loads the result. For
    example::

        write_weights_tree(tree_from_model(model), model.keras_config, "m.weights.h5")
    """
    file = Path(os.fspath(path))
    _check_suffix(file)
    where = str(file)
    name = model_name or str((config.get("config") or {}).get("name") or "model")

    def build(f: h5py.File) -> None:
        f.create_group("vars").attrs["name"] = name
        _write_layers(f, tree, config, "", where)

    _write_bytes(file, build)
    return file


def _write_layers(
    f: h5py.File, tree: Mapping[str, Any], model: Mapping[str, Any], prefix: str, where: str
) -> None:
    """``saving_lib._save_container_state`` for one model's layers (recursing into models)."""
    entries = model_layers(model, where)
    names = [entry_name(e) for e in entries]
    extra = sorted(set(tree) - set(names))
    if extra:
        raise PortingError(
            f"{where}: the weights name layers {extra} that model {entry_name(model)!r} does "
            f"not have (its layers: {names})"
        )
    for entry, path, name in zip(entries, class_paths(entries), names, strict=True):
        full = f"{prefix}layers/{path}"
        group = f.create_group(f"{full}/vars")
        group.attrs["name"] = name
        value = tree.get(name, [])
        if is_model_entry(entry):
            if not isinstance(value, Mapping):
                raise PortingError(
                    f"{where}: layer {name!r} is a nested model; got {len(value)} arrays"
                )
            _write_layers(f, value, entry, f"{full}/", where)
            continue
        if isinstance(value, Mapping):
            raise PortingError(f"{where}: layer {name!r} is not a model; got a nested tree for it")
        for i, array in enumerate(value):
            group[str(i)] = np.asarray(array)
