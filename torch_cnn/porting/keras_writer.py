"""Writing ``.weights.h5`` files as Keras's own ``save_weights`` writes them, without Keras.

See ``keras_files`` for the layout (``layers/<class path>/vars/<i>``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
from torch import nn

from torch_cnn._io import atomic_write
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.porting.keras_files import WEIGHTS_SUFFIX, _class_path, to_snake_case
from torch_cnn.porting.transforms import torch_to_keras

__all__ = ["write_weights_h5"]


def write_weights_h5(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    layer_names: Sequence[str] | None = None,
    model_name: str | None = None,
    input_name: str = "input_layer",
    keras_api: str | None = None,
) -> Path:
    """Write ``model``'s weights as the ``.weights.h5`` Keras's ``save_weights`` writes.

    Mirrors ``saving_lib.save_weights_only``: a root ``vars`` group named after
    the model, then for each layer in order ``layers/<class path>/vars`` with
    attribute ``name`` and datasets ``0`` (kernel), ``1`` (bias); a Functional
    model also writes ``layers/input_layer``. ``layer_names`` and
    ``model_name`` (and a Functional model's ``input_name``) only fill the
    ``name`` attributes, which Keras does not read back; they default to what
    a fresh Keras session calls the layers.
    ``keras_api`` ("functional" or "sequential") defaults to the model's ``keras_api``.
    The file appears whole or not at all (written beside ``path``, then renamed).

    For example::

        write_weights_h5(model, "model_cnn.weights.h5")
        keras_ref.build_model("model_cnn").load_weights("model_cnn.weights.h5")
    """
    file = Path(os.fspath(path))
    if not file.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"The filename must end in `{WEIGHTS_SUFFIX}`. Received: path={file}")
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
        paths.append(_class_path(snake, counts[snake]))
        counts[snake] += 1
    names = list(layer_names) if layer_names is not None else paths
    if len(names) != len(classes):
        raise ValueError(
            f"layer_names must name each of the {len(classes)} Keras layers of {model.name!r} "
            f"({classes}). Received: {len(names)} names"
        )

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            _write_store(
                f, api, model_name or api, input_name, zip(paths, names, weights, strict=True)
            )

    atomic_write(file, write)
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
