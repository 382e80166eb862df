"""Keras model files without Keras: the library's readers, on top of ``reader``.

``read_keras_source`` returns what a file holds (``reader.KerasFileContents``: config,
weights tree, format) for the converter; ``read_keras_file`` describes it as the ordered
layer chain porting into the seed models works on (``KerasModelRecord``). Both parse the file
in a child process by default (``isolate=True``, see ``torch_cnn.porting.isolate``: what is
refused, the caps, why a child) and raise ``PortingError`` naming the file.

Where a config exists (``.keras``, its directory, legacy ``.h5``) it gives the layer order,
classes, per-layer config and input shape. A ``.weights.h5`` (or its shards) alone records
the order within each class exactly but not how classes interleave: Keras 3 stores the k-th
layer of a class at ``layers/<snake case>_<k>`` (``saving_lib._save_container_state``), so
nothing says whether a ``max_pooling2d`` came after ``conv2d`` or ``conv2d_1`` (HDF5 lists
links alphabetically). ``read_keras_file(path, layer_classes=...)`` interleaves the per-class
queues in the order given, as Keras's own ``load_weights`` pairs a model's layers with the
file; without it the order is the one a plain CNN has: Conv2D, each followed by the
MaxPooling2D of the same rank, then Flatten, then Dense. Weights are always paired per class
in the file's exact order, so a wrong guess about where a weightless layer sits can only make
a port refuse, never load a kernel into the wrong layer. Keras 3 releases that did not yet
store layer names (no ``name`` attribute on ``vars``) wrote no group for a weightless layer
either: then ``layer_classes`` is needed.
A Keras 2 weights ``.h5`` (``save_weights("w.h5")``) lists its layers by name without their
classes: ``layer_classes`` pairs its layers with weights with the model's, in order, as
``legacy_h5_format.load_weights_from_hdf5_group`` does.
"""

from __future__ import annotations

import os
import re
import warnings
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from torch_cnn.porting import reader
from torch_cnn.porting.isolate import read_isolated
from torch_cnn.porting.keras_config import (
    class_path,
    class_paths,
    entry_name,
    is_legacy_op,
    model_layers,
    to_snake_case,
)
from torch_cnn.porting.reader import DEFAULT_LIMITS, KerasFileContents, KerasFileError, Limits
from torch_cnn.porting.records import KerasLayer, KerasModelRecord, PortingError

__all__ = ["read_keras_file", "read_keras_source", "to_snake_case"]

WEIGHTS_SUFFIX = ".weights.h5"  # save_weights refuses any other name (or .weights.json)
KERAS3_FORMATS = ("keras", "keras-dir")  # weights addressed by class path
_WEIGHTLESS = ("MaxPooling2D", "Flatten")
_WITH_WEIGHTS = ("Conv2D", "Dense")
_KNOWN_CLASSES = (*_WITH_WEIGHTS, *_WEIGHTLESS, "InputLayer")
_CLASS_OF_PATH = {to_snake_case(c): c for c in _KNOWN_CLASSES}


def read_keras_source(
    path: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    isolate: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> KerasFileContents:
    """What a Keras file holds (any format: ``reader``'s docstring), or ``PortingError``.

    ``config`` (a model entry) places the layers of a weights-only file. ``isolate=False``
    reads in this process (faster; a crash in libhdf5 would then be this process's).
    ``limits`` are the caps checked before reading (``reader_limits.Limits``).
    NaN or Inf weights are loaded with a ``RuntimeWarning``. For example::

        contents = read_keras_source("model.keras")
        contents.config["class_name"], list(contents.weights)  # 'Functional', ['conv2d', ...]
    """
    cfg = dict(config) if config is not None else None
    try:
        if isolate:
            contents = read_isolated(path, config=cfg, limits=limits)
        else:
            contents = reader.read(path, config=cfg, limits=limits)
    except KerasFileError as exc:
        raise PortingError(str(exc)) from None
    if contents.nonfinite:
        places = ", ".join(contents.nonfinite[:5]) + (", ..." * (len(contents.nonfinite) > 5))
        warnings.warn(
            f"{contents.path}: NaN or Inf in {len(contents.nonfinite)} weight arrays ({places})",
            RuntimeWarning,
            stacklevel=2,
        )
    return contents


def read_keras_file(
    path: str | os.PathLike[str],
    *,
    layer_classes: Sequence[str] | None = None,
    isolate: bool = True,
) -> KerasModelRecord:
    """Describe a Keras file as a ``KerasModelRecord`` (the layers porting pairs with a model).

    ``layer_classes`` (Keras class names in model order, InputLayer excluded) places the
    layers of a weights-only file, which records no order across classes; files with a
    config ignore it. Anything unreadable, inconsistent or not Keras raises
    ``PortingError`` naming the file.

    For example (``[layer.class_name for layer in record.layers]`` gives
    ``['Conv2D', 'Conv2D', 'Flatten', 'Dense']``)::

        record = read_keras_file("model_cnn.keras")
    """
    contents = read_keras_source(path, isolate=isolate)
    where = os.fspath(path)
    if contents.config is not None and contents.weights is not None:
        return _record_from_config(contents, where)
    if contents.store is not None:
        return _record_from_store(contents, where, layer_classes)
    if contents.keras2_layers is not None:
        return _record_from_keras2(contents.keras2_layers, where, layer_classes)
    raise PortingError(
        f"{where}: a {contents.format} file whose model is a "
        f"{(contents.config or {}).get('class_name')!r}; expected a Sequential or Functional model"
    )


def _record_from_config(contents: KerasFileContents, where: str) -> KerasModelRecord:
    """The top-level layers in model order (InputLayer excluded), checked against the config."""
    assert contents.config is not None and contents.weights is not None
    config = contents.config
    entries = [e for e in model_layers(config, where) if not is_legacy_op(e)]
    layers = []
    for entry, path in zip(entries, class_paths(entries), strict=True):
        cls, name = str(entry.get("class_name")), entry_name(entry)
        if cls == "InputLayer":
            continue
        cfg = entry.get("config")
        cfg = cfg if isinstance(cfg, dict) else {}
        arrays = contents.weights.get(name, [])
        arrays = [] if isinstance(arrays, Mapping) else arrays  # a nested model: not a seed's
        at = f" at layers/{path}" if contents.format in KERAS3_FORMATS else ""
        _check_count(cls, cfg, arrays, where, f"{name!r} ({cls}){at}")
        layers.append(KerasLayer(name, cls, cfg, tuple(arrays)))
    return KerasModelRecord(where, tuple(layers), _input_shape(config))


def _expected_count(class_name: str, config: Mapping[str, Any]) -> int | None:
    """How many arrays a layer of a known class stores (kernel [+ bias]); None when unknown."""
    if class_name in _WITH_WEIGHTS:
        return 2 if config.get("use_bias", True) else 1
    if class_name in _WEIGHTLESS or class_name == "InputLayer":
        return 0
    return None


def _check_count(
    class_name: str, config: Mapping[str, Any], arrays: Sequence[Any], where: str, desc: str
) -> None:
    """A layer must store as many arrays as its config says (kernel [+ bias])."""
    want = _expected_count(class_name, config)
    if want is not None and len(arrays) != want:
        raise PortingError(
            f"{where}: layer {desc} stores {len(arrays)} weight arrays; its config expects "
            f"{want} (kernel{', bias' if want == 2 else ''})"
        )


def _input_shape(config: Mapping[str, Any]) -> tuple[int, ...] | None:
    """(H, W, C) from the InputLayer's ``batch_shape`` (Keras 2: ``batch_input_shape``)."""
    inner = config.get("config")
    entries = inner.get("layers") if isinstance(inner, dict) else None
    candidates = []
    for entry in entries if isinstance(entries, list) else []:
        cfg = entry.get("config") if isinstance(entry, dict) else None
        for key in ("batch_shape", "batch_input_shape"):
            if isinstance(cfg, dict) and key in cfg:
                candidates.append(cfg[key])
    candidates.append(inner.get("build_input_shape") if isinstance(inner, dict) else None)
    for shape in candidates:
        if (
            isinstance(shape, list)
            and len(shape) > 1
            and all(isinstance(d, int) for d in shape[1:])
        ):
            return tuple(shape[1:])
    return None


# -------------------------------------------------------- weights-only files


def _record_from_store(
    contents: KerasFileContents, where: str, layer_classes: Sequence[str] | None
) -> KerasModelRecord:
    """A ``.weights.h5``: per-class queues from the class paths, interleaved (module docstring)."""
    assert contents.store is not None
    queues: dict[str, list[tuple[int, KerasLayer]]] = defaultdict(list)
    pattern = re.compile(r"(?P<snake>.+?)(?:_(?P<k>\d+))?")
    for path, arrays in contents.store.items():
        if "/" in path:  # inside a nested model: not a seed model's layer
            continue
        m = pattern.fullmatch(path)
        assert m is not None  # the pattern matches any non-empty name
        snake, k = m["snake"], int(m["k"] or 0)
        if snake not in _CLASS_OF_PATH and path in _CLASS_OF_PATH:
            snake, k = path, 0
        cls = _CLASS_OF_PATH.get(snake, "".join(p.title() for p in snake.split("_")))
        if cls != "InputLayer":
            name = contents.store_names.get(path, path)
            queues[cls].append((k, KerasLayer(name, cls, {}, tuple(arrays))))
    ordered: dict[str, list[KerasLayer]] = {}
    for cls, queue in queues.items():
        queue.sort(key=lambda item: item[0])
        ranks = [k for k, _ in queue]
        if ranks != list(range(len(queue))):
            snake = to_snake_case(cls)
            gap = min(set(range(len(queue) + 1)) - set(ranks))
            raise PortingError(
                f"{where}: layers/{class_path(snake, gap)} is missing: Keras numbers the "
                f"{cls} layers {snake}, {snake}_1, ... in model order and the file holds "
                f"{[class_path(snake, k) for k in ranks]}"
            )
        ordered[cls] = [layer for _, layer in queue]
    layers = _interleave(ordered, where, layer_classes, bool(contents.store_names))
    return KerasModelRecord(where, tuple(layers), None)


def _interleave(
    queues: dict[str, list[KerasLayer]],
    where: str,
    layer_classes: Sequence[str] | None,
    has_names: bool,
) -> list[KerasLayer]:
    """Merge the per-class queues in ``layer_classes`` order, or the default CNN order."""
    held = {cls: len(q) for cls, q in queues.items()}
    if layer_classes is not None:
        order = list(layer_classes)
        if not has_names:  # Keras before layer-name metadata wrote no weightless groups
            for cls in _WEIGHTLESS:
                if cls not in queues and cls in order:
                    n = order.count(cls)
                    queues[cls] = [KerasLayer(f"({cls}, not stored)", cls) for _ in range(n)]
                    held[cls] = n
    else:
        order = _default_order(held, where, has_names)
    want: dict[str, int] = defaultdict(int)
    for cls in order:
        want[cls] += 1
    if dict(want) != held:
        raise PortingError(
            f"{where}: the weights hold {_counts(held)}; expected {_counts(want)} "
            f"(layer classes {order})"
        )
    taken: dict[str, int] = defaultdict(int)
    out = []
    for cls in order:
        out.append(queues[cls][taken[cls]])
        taken[cls] += 1
    return out


def _default_order(held: dict[str, int], where: str, has_names: bool) -> list[str]:
    """A plain CNN's order: Conv2D, each followed by a MaxPooling2D, then Flatten, then Dense."""
    unknown = sorted(set(held) - {"Conv2D", *_WEIGHTLESS, "Dense"})
    if unknown:
        raise PortingError(
            f"{where}: a .weights.h5 does not record where its {unknown} layers sit among "
            "the others; pass layer_classes= (the Keras classes in model order)"
        )
    if not has_names and "Conv2D" in held and "Dense" in held:
        raise PortingError(
            f"{where}: written by a Keras that stored no groups for weightless layers, so "
            "what lies between its Conv2D and Dense layers is unknown; pass layer_classes= "
            "(the Keras classes in model order)"
        )
    n_conv, n_pool = held.get("Conv2D", 0), held.get("MaxPooling2D", 0)
    order = []
    for i in range(max(n_conv, n_pool)):
        order += ["Conv2D"] * (i < n_conv) + ["MaxPooling2D"] * (i < n_pool)
    return order + ["Flatten"] * held.get("Flatten", 0) + ["Dense"] * held.get("Dense", 0)


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {cls}" for cls, n in sorted(counts.items()) if n) or "no layers"


def _record_from_keras2(
    stored: list[tuple[str, list[Any]]], where: str, layer_classes: Sequence[str] | None
) -> KerasModelRecord:
    """Keras 2 ``save_weights``: its layers with weights pair with the classes that have some."""
    if layer_classes is None:
        raise PortingError(
            f"{where}: a Keras 2 weights file names its layers but not their classes; pass "
            "layer_classes= (the Keras classes in model order)"
        )
    unknown = sorted(set(layer_classes) - {*_WITH_WEIGHTS, *_WEIGHTLESS})
    if unknown:
        raise PortingError(f"{where}: layer classes {unknown} are not seed-model layers")
    weighted = [(name, arrays) for name, arrays in stored if arrays]
    want = [cls for cls in layer_classes if cls in _WITH_WEIGHTS]
    if len(weighted) != len(want):
        raise PortingError(
            f"{where}: the file holds {len(weighted)} layers with weights "
            f"({[name for name, _ in weighted]}); layer classes {list(layer_classes)} have "
            f"{len(want)}"
        )
    queue = iter(weighted)
    layers = []
    for cls in layer_classes:
        if cls in _WITH_WEIGHTS:
            name, arrays = next(queue)
            layers.append(KerasLayer(name, cls, {}, tuple(arrays)))
        else:
            layers.append(KerasLayer(f"({cls}, no weights)", cls))
    return KerasModelRecord(where, tuple(layers), None)
