"""Keras model files without Keras: read ``.keras``, ``.weights.h5`` and legacy ``.h5``.

Only ``zipfile``, ``json``, ``h5py`` and ``numpy`` touch the files, so a torch
machine without TensorFlow can load Keras weights. What the readers rely on,
as Keras 3 writes it (``keras/src/saving/saving_lib.py``,
``keras/src/legacy/saving/legacy_h5_format.py``):

``.keras`` (a zip archive)
    ``config.json`` (the serialized model, layers in model order),
    ``metadata.json`` and ``model.weights.h5`` (below), read from memory.

``.weights.h5`` (``model.save_weights``; also the ``model.weights.h5`` member)
    ``layers/<class path>/vars/<i>``: variables are addressed by the layer's
    *class*, never its name. ``_save_container_state`` names the k-th layer
    of a class ``to_snake_case(class)`` + ``_k`` (``conv2d``, ``conv2d_1``,
    ``max_pooling2d``, ``dense_1``) in ``model.layers`` order, and
    ``save_own_variables`` numbers a layer's variables ``0, 1`` (kernel,
    bias). Keras 3.15 passes ``H5IOStore.make`` ``metadata={"name":
    layer.name}``, so *every* layer, weightless ones included, gets a ``vars``
    group whose ``name`` attribute is the user's layer name (``"stem"``); the
    root ``vars`` carries the model's name and a Functional model also writes
    ``layers/input_layer``. Keras 3 releases without that metadata create a
    group only when a variable is stored, so their files have no groups for
    weightless layers. tf.keras 2.13 wrote ``_layer_checkpoint_dependencies``
    where Keras 3 writes ``layers``.

legacy ``.h5`` (``model.save("m.h5")``)
    root attribute ``model_config`` (JSON), ``model_weights`` with attribute
    ``layer_names`` (model order; possibly chunked as ``layer_names0``, ...)
    and one group per layer *name* whose ``weight_names`` attribute lists its
    datasets in order (``sequential/conv2d_2/kernel``, ...).

Where a config exists (``.keras``, legacy ``.h5``) it gives the layer order,
classes, per-layer config and input shape. A ``.weights.h5`` alone records
the order within each class exactly but not how classes interleave (nothing
says whether a ``max_pooling2d`` came after ``conv2d`` or ``conv2d_1``:
HDF5 lists links alphabetically, Keras does not ask it to track creation
order, and object addresses do not follow creation order either). ``read_keras_file(path, layer_classes=...)`` interleaves the per-class
queues in the order given, exactly as Keras's own ``load_weights`` pairs a
model's layers with the file; without it the order is the one a plain CNN
has: Conv2D, each followed by the MaxPooling2D of the same rank, then
Flatten, then Dense. Weights are always paired per class in the file's exact
order, so a wrong guess about where a weightless layer sits can only make a
port refuse, never load a kernel into the wrong layer.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from torch_cnn.porting.records import KerasLayer, KerasModelRecord, PortingError

__all__ = ["read_keras_file", "to_snake_case"]

CONFIG_FILENAME = "config.json"  # saving_lib._CONFIG_FILENAME
WEIGHTS_FILENAME = "model.weights.h5"  # saving_lib._VARS_FNAME_H5
WEIGHTS_SUFFIX = ".weights.h5"  # save_weights_only refuses any other name
# saving_lib's decompression-bomb guards: a member or dataset declaring more
# than the floor and more than this multiple of what is stored is refused.
BOMB_FLOOR_BYTES = 1 << 32
ZIP_MAX_EXPANSION = 100
H5_MAX_EXPANSION = 1000
FLOAT_KINDS = "f"  # float16/32/64; bfloat16 (ml_dtypes) needs Keras to decode

_WEIGHTLESS = ("MaxPooling2D", "Flatten")

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
# What a damaged or malformed file makes zipfile, zlib, json and h5py raise.
_READ_ERRORS = (
    OSError, KeyError, ValueError, TypeError, AttributeError, EOFError, zipfile.BadZipFile,
    zlib.error,
)  # fmt: skip


def to_snake_case(name: str) -> str:
    """``keras.src.utils.naming.to_snake_case``: "MaxPooling2D" → "max_pooling2d"."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


_KNOWN_CLASSES = ("Conv2D", "MaxPooling2D", "Flatten", "Dense", "InputLayer")
_CLASS_OF_PATH = {to_snake_case(c): c for c in _KNOWN_CLASSES}


def _class_path(snake: str, k: int) -> str:
    """``saving_lib._get_unique_name``: the k-th layer of a class is ``snake``, ``snake_1``, ..."""
    return snake if k == 0 else f"{snake}_{k}"


# ---------------------------------------------------------------- reading


def read_keras_file(
    path: str | os.PathLike[str], *, layer_classes: Sequence[str] | None = None
) -> KerasModelRecord:
    """Describe a Keras ``.keras``, ``.weights.h5`` or legacy ``.h5`` file as a ``KerasModelRecord``.

    The format is told by the file's first bytes, not its name. ``layer_classes``
    (Keras class names in model order, InputLayer excluded) places the layers
    of a ``.weights.h5``, which records no order across classes; files with a
    config ignore it. Anything unreadable, inconsistent or not Keras raises
    ``PortingError`` naming the file.

    For example (``[layer.class_name for layer in record.layers]`` gives
    ``['Conv2D', 'Conv2D', 'Flatten', 'Dense']``)::

        record = read_keras_file("model_cnn.keras")
    """
    file = Path(os.fspath(path))
    where = str(file)
    if not file.is_file():
        raise PortingError(f"{where}: no such file (expected a .keras, .weights.h5 or .h5 file)")
    try:
        with open(file, "rb") as fh:
            head = fh.read(4)
        if head in ZIP_MAGIC:
            return _read_archive(file, where)
        with _open_h5(file, where) as f:
            return _read_h5(f, where, layer_classes)
    except PortingError:
        raise
    except _READ_ERRORS as exc:
        raise PortingError(
            f"{where}: could not be read as a Keras file ({type(exc).__name__}: {exc})"
        ) from exc


@contextmanager
def _open_h5(
    source: Path | io.BytesIO,
    where: str,
    what: str = "neither a Keras zip archive (.keras) nor a readable HDF5 file (.weights.h5/.h5)",
) -> Iterator[h5py.File]:
    try:
        f = h5py.File(source, "r")
    except OSError as exc:
        raise PortingError(f"{where}: {what}: {exc}") from exc
    try:
        yield f
    finally:
        f.close()


def _read_archive(file: Path, where: str) -> KerasModelRecord:
    """A ``.keras`` zip: ``config.json`` and ``model.weights.h5``, as ``saving_lib.load_model`` reads them."""
    with zipfile.ZipFile(file, "r") as zf:
        names = set(zf.namelist())
        for member in (CONFIG_FILENAME, WEIGHTS_FILENAME):
            if member not in names:
                extra = ""
                if member == WEIGHTS_FILENAME and "model.weights.npz" in names:
                    extra = " (weights_format='npz' archives are not supported)"
                raise PortingError(
                    f"{where}: the archive has no {member}{extra}; members: {sorted(names)}"
                )
        config = json.loads(_zip_read(zf, CONFIG_FILENAME, where))
        weights = io.BytesIO(_zip_read(zf, WEIGHTS_FILENAME, where))
    with _open_h5(weights, where, f"its {WEIGHTS_FILENAME} is not a readable HDF5 file") as f:
        return _read_with_config(f, where, config)


def _zip_read(zf: zipfile.ZipFile, name: str, where: str) -> bytes:
    """``saving_lib._safe_zip_read``: refuse a decompression bomb before reading."""
    info = zf.getinfo(name)
    if info.file_size > BOMB_FLOOR_BYTES and info.file_size > ZIP_MAX_EXPANSION * max(
        info.compress_size, 1
    ):
        raise PortingError(
            f"{where}: archive member {name!r} declares {info.file_size} bytes but stores "
            f"{info.compress_size}; refusing a potential decompression bomb"
        )
    with zf.open(name, "r") as fh:
        return fh.read()


def _read_h5(f: h5py.File, where: str, layer_classes: Sequence[str] | None) -> KerasModelRecord:
    if "model_weights" in f or _attr_list(f, "layer_names"):
        return _read_legacy(f, where)
    if _layers_group(f, where, required=False) is not None:
        return _read_weights_only(f, where, layer_classes)
    raise PortingError(
        f"{where}: an HDF5 file but not a Keras one: expected a 'layers' group (Keras 3 "
        f".weights.h5) or 'model_weights' (legacy .h5); found top-level keys {sorted(f.keys())}"
    )


def _child(parent: h5py.Group, name: str, kind: type, where: str) -> Any:
    """``safe_get_h5_group``/``safe_get_h5_dataset``: hard links only, no external or virtual data."""
    link = parent.get(name, default=None, getlink=True)
    if link is None:
        raise PortingError(f"{where}: {parent.name.rstrip('/')}/{name} is missing")
    if not isinstance(link, h5py.HardLink):
        raise PortingError(f"{where}: {parent.name}/{name} is a {type(link).__name__}; not allowed")
    obj = parent[name]
    if not isinstance(obj, kind):
        raise PortingError(
            f"{where}: {obj.name} is a {type(obj).__name__}; expected an HDF5 {kind.__name__}"
        )
    if isinstance(obj, h5py.Dataset):
        if obj.external or obj.is_virtual:
            raise PortingError(f"{where}: {obj.name} is an external or virtual dataset")
        declared = math.prod(obj.shape or ()) * obj.dtype.itemsize
        stored = obj.id.get_storage_size()
        if declared > BOMB_FLOOR_BYTES and declared > H5_MAX_EXPANSION * stored:
            raise PortingError(
                f"{where}: {obj.name} declares {declared} bytes but stores {stored}; refused"
            )
    return obj


def _array(ds: h5py.Dataset, where: str, layer: str) -> np.ndarray:
    """A float weight array, or ``PortingError`` naming the layer and the dataset."""
    if ds.attrs.get("dtype") == "bfloat16" or ds.dtype.kind not in FLOAT_KINDS:
        got = "bfloat16" if ds.attrs.get("dtype") == "bfloat16" else str(ds.dtype)
        raise PortingError(
            f"{where}: layer {layer}: {ds.name} has dtype {got}; expected float16, float32 "
            "or float64"
        )
    return np.asarray(ds[()])


def _attr_list(obj: h5py.HLObject, name: str) -> list[str]:
    """``legacy_h5_format.load_attributes_from_hdf5_group``: a string list, maybe chunked."""
    keys = [name]
    if name not in obj.attrs:  # too long for one header message: layer_names0, layer_names1, ...
        keys = []
        while f"{name}{len(keys)}" in obj.attrs:
            keys.append(f"{name}{len(keys)}")
    out: list[str] = []
    for key in keys:
        for item in np.atleast_1d(obj.attrs[key]):
            out.append(item.decode("utf8") if isinstance(item, bytes) else str(item))
    return out


# ---------------------------------------------------- Keras 3 weights store


def _layers_group(f: h5py.File, where: str, required: bool = True) -> h5py.Group | None:
    """The group holding per-layer variables (``H5IOStore.get`` also tries the tf.keras 2.13 name)."""
    for key in ("layers", "_layer_checkpoint_dependencies"):
        if key in f:
            group: h5py.Group = _child(f, key, h5py.Group, where)
            return group
    if required:
        raise PortingError(
            f"{where}: no 'layers' group in the weights; top-level keys {sorted(f.keys())}"
        )
    return None


def _read_vars(
    layers: h5py.Group, path: str, where: str, cls: str, name: str | None = None
) -> tuple[tuple[np.ndarray, ...], str | None] | None:
    """A layer's variables ``vars/0, vars/1, ...`` and its ``name`` attribute; None if absent.

    ``name`` (from a config) labels errors; without it the stored attribute does.
    """
    if path not in layers:
        return None
    group = _child(_child(layers, path, h5py.Group, where), "vars", h5py.Group, where)
    stored = group.attrs.get("name")
    stored = stored.decode("utf8") if isinstance(stored, bytes) else stored
    desc = f"{name or stored or path!r} ({cls}) at layers/{path}"
    keys = sorted(group.keys(), key=lambda k: (len(k), k))
    if keys != [str(i) for i in range(len(keys))]:
        raise PortingError(
            f"{where}: layer {desc}: {group.name} holds {keys}; expected variables named 0, 1, ..."
        )
    arrays = tuple(_array(_child(group, k, h5py.Dataset, where), where, desc) for k in keys)
    return arrays, (None if stored is None else str(stored))


def _expected_count(class_name: str, config: Mapping[str, Any]) -> int | None:
    """How many arrays a layer of a known class stores (kernel [+ bias]); None when unknown."""
    if class_name in ("Conv2D", "Dense"):
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


def _layer_entries(config: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(config, dict):
        raise PortingError(f"{where}: the model config is a {type(config).__name__}, not a dict")
    inner = config.get("config", {})
    entries = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(entries, list):
        raise PortingError(
            f"{where}: the model config is a {config.get('class_name')!r} without a layer list; "
            "expected a Sequential or Functional model"
        )
    return [e for e in entries if isinstance(e, dict)]


def _entry_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    cfg = entry.get("config")
    return cfg if isinstance(cfg, dict) else {}


def _entry_name(entry: Mapping[str, Any]) -> str:
    cfg = _entry_config(entry)
    return str(cfg.get("name") or entry.get("name") or "?")


def _input_shape(
    config: Mapping[str, Any], entries: list[dict[str, Any]]
) -> tuple[int, ...] | None:
    """(H, W, C) from the InputLayer's ``batch_shape`` (Keras 2: ``batch_input_shape``)."""
    candidates = []
    for entry in entries:
        cfg = _entry_config(entry)
        for key in ("batch_shape", "batch_input_shape"):
            if key in cfg:
                candidates.append(cfg[key])
    candidates.append(_entry_config(config).get("build_input_shape"))  # Sequential
    for shape in candidates:
        if (
            isinstance(shape, list)
            and len(shape) > 1
            and all(isinstance(d, int) for d in shape[1:])
        ):
            return tuple(shape[1:])
    return None


def _read_with_config(f: h5py.File, where: str, config: Mapping[str, Any]) -> KerasModelRecord:
    """Pair ``config.json``'s layers with ``layers/<class path>`` the way ``_load_container_state`` does."""
    entries = _layer_entries(config, where)
    layers_group = _layers_group(f, where)
    assert layers_group is not None
    counts: dict[str, int] = defaultdict(int)
    used: set[str] = set()
    layers = []
    for entry in entries:
        cls = str(entry.get("class_name"))
        name = _entry_name(entry)
        snake = to_snake_case(cls)
        path = _class_path(snake, counts[snake])
        counts[snake] += 1
        used.add(path)
        if cls == "InputLayer":
            continue
        cfg = _entry_config(entry)
        desc = f"{name!r} ({cls}) at layers/{path}"
        found = _read_vars(layers_group, path, where, cls, name)
        arrays, stored_name = found if found is not None else ((), None)
        if stored_name is not None and stored_name != name:
            raise PortingError(
                f"{where}: layer {desc} is named {stored_name!r} in the weights but {name!r} in "
                f"{CONFIG_FILENAME}; the archive is inconsistent"
            )
        _check_count(cls, cfg, arrays, where, desc)
        layers.append(KerasLayer(name, cls, cfg, arrays))
    extra = sorted(set(layers_group.keys()) - used)
    if extra:
        raise PortingError(
            f"{where}: the weights hold layers {extra} that {CONFIG_FILENAME} does not describe"
        )
    return KerasModelRecord(where, tuple(layers), _input_shape(config, entries))


def _read_weights_only(
    f: h5py.File, where: str, layer_classes: Sequence[str] | None
) -> KerasModelRecord:
    """A ``.weights.h5``: per-class queues from the class paths, interleaved (module docstring)."""
    layers_group = _layers_group(f, where)
    assert layers_group is not None
    queues: dict[str, list[tuple[int, KerasLayer]]] = defaultdict(list)
    has_names = False
    pattern = re.compile(r"(?P<snake>.+?)(?:_(?P<k>\d+))?")
    for path in layers_group:
        m = pattern.fullmatch(path)
        assert m is not None  # the pattern matches any non-empty name
        snake, k = m["snake"], int(m["k"] or 0)
        if snake not in _CLASS_OF_PATH and path in _CLASS_OF_PATH:
            snake, k = path, 0
        cls = _CLASS_OF_PATH.get(snake, "".join(p.title() for p in snake.split("_")))
        found = _read_vars(layers_group, path, where, cls)
        arrays, stored_name = found if found is not None else ((), None)
        has_names = has_names or stored_name is not None
        if cls != "InputLayer":
            queues[cls].append((k, KerasLayer(stored_name or path, cls, {}, arrays)))
    ordered: dict[str, list[KerasLayer]] = {}
    for cls, queue in queues.items():
        queue.sort(key=lambda item: item[0])
        ranks = [k for k, _ in queue]
        if ranks != list(range(len(queue))):
            snake = to_snake_case(cls)
            gap = min(set(range(len(queue) + 1)) - set(ranks))
            raise PortingError(
                f"{where}: layers/{_class_path(snake, gap)} is missing: Keras numbers the "
                f"{cls} layers {snake}, {snake}_1, ... in model order and the file holds "
                f"{[_class_path(snake, k) for k in ranks]}"
            )
        ordered[cls] = [layer for _, layer in queue]
    layers = _interleave(ordered, where, layer_classes, has_names)
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
        unknown = sorted(set(queues) - {"Conv2D", *_WEIGHTLESS, "Dense"})
        if unknown:
            raise PortingError(
                f"{where}: a .weights.h5 does not record where its {unknown} layers sit among "
                "the others; pass layer_classes= (the Keras classes in model order)"
            )
        if not has_names and "Conv2D" in queues and "Dense" in queues:
            raise PortingError(
                f"{where}: written by a Keras that stored no groups for weightless layers, so "
                "what lies between its Conv2D and Dense layers is unknown; pass layer_classes= "
                "(the Keras classes in model order)"
            )
        n_conv, n_pool = held.get("Conv2D", 0), held.get("MaxPooling2D", 0)
        order = []
        for i in range(max(n_conv, n_pool)):
            order += ["Conv2D"] * (i < n_conv) + ["MaxPooling2D"] * (i < n_pool)
        order += ["Flatten"] * held.get("Flatten", 0) + ["Dense"] * held.get("Dense", 0)
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


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {cls}" for cls, n in sorted(counts.items()) if n) or "no layers"


# ------------------------------------------------------------- legacy .h5


def _read_legacy(f: h5py.File, where: str) -> KerasModelRecord:
    """``legacy_h5_format.load_model_from_hdf5``: ``layer_names`` order, ``weight_names`` per layer."""
    group = _child(f, "model_weights", h5py.Group, where) if "model_weights" in f else f
    names = _attr_list(group, "layer_names")
    if not names:
        raise PortingError(f"{where}: legacy .h5 without a 'layer_names' attribute")
    raw = f.attrs.get("model_config")
    if raw is None:
        raise PortingError(
            f"{where}: legacy .h5 without 'model_config' (a Keras 2 save_weights file); "
            "expected a full model saved with model.save('model.h5')"
        )
    config = json.loads(raw.decode("utf8") if isinstance(raw, bytes) else str(raw))
    entries = _layer_entries(config, where)
    by_name = {_entry_name(e): e for e in entries}
    config_names = [_entry_name(e) for e in entries if e.get("class_name") != "InputLayer"]
    file_names = [n for n in names if by_name.get(n, {}).get("class_name") != "InputLayer"]
    if file_names != config_names:
        raise PortingError(
            f"{where}: layer_names {file_names} do not match the layers of model_config "
            f"{config_names}"
        )
    layers = []
    for name in file_names:
        entry = by_name[name]
        cls, cfg = str(entry.get("class_name")), _entry_config(entry)
        desc = f"{name!r} ({cls})"
        layer_group = _child(group, name, h5py.Group, where)
        arrays = tuple(
            _array(_child(layer_group, wn, h5py.Dataset, where), where, desc)
            for wn in _attr_list(layer_group, "weight_names")
        )
        _check_count(cls, cfg, arrays, where, desc)
        layers.append(KerasLayer(name, cls, cfg, arrays))
    return KerasModelRecord(where, tuple(layers), _input_shape(config, entries))
