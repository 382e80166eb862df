"""HDF5 read defensively: hard links only, declared sizes checked before any data is read.

Part of the standalone reader (``reader.py``; the standard library, NumPy and h5py only).
What Keras itself guards (``keras/src/saving/saving_lib.py``: ``safe_get_h5_group``,
``safe_get_h5_dataset``) is done here for every component of every path, plus: data a
dataset declares is checked against the caps and against what the file stores before it is
read, external storage, virtual datasets and filters HDF5 does not build in are refused, and
arrays come back in the machine's byte order.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from torch_cnn.porting.reader_limits import Budget, KerasFileError, readable

__all__ = ["H5File", "open_h5"]

# Filters libhdf5 and h5py carry themselves; any other id would make HDF5 look for a plugin.
BUILT_IN_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                    6: "scaleoffset", 32000: "lzf"}  # fmt: skip
FLOAT_SIZES = (2, 4, 8)  # float16/32/64; a float128 is not a Keras dtype
WEIGHT_DTYPES = "float16, float32 or float64"
# Class names whose snake case does not CamelCase back (messages only: a path names its class).
_CLASSES = ("Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose", "DepthwiseConv2D",
            "SeparableConv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
            "GlobalMaxPooling2D", "UpSampling2D", "ZeroPadding2D", "Cropping2D",
            "SpatialDropout2D", "PReLU", "ReLU", "ELU", "InputLayer")  # fmt: skip
_SNAKE = {re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", c)).lower(): c
          for c in _CLASSES}  # fmt: skip


def class_of_path(path: str) -> str:
    """``layers/max_pooling2d_1`` → ``MaxPooling2D`` (a guess, for messages only)."""
    snake = re.sub(r"_\d+$", "", path.rsplit("/", 1)[-1])
    return _SNAKE.get(snake) or "".join(p.title() for p in snake.split("_"))


def open_h5(source: str | bytes, budget: Budget, label: str = "") -> H5File:
    """An HDF5 file from a path or from bytes (an archive member); errors name ``label``."""
    try:
        if isinstance(source, bytes):
            return H5File(h5py.File(io.BytesIO(source), "r"), len(source), budget, label)
        return H5File(h5py.File(source, "r"), os.path.getsize(source), budget, label)
    except OSError as exc:
        raise budget.fail(label, f"HDF5 cannot open it: {exc}") from None


class H5File:
    """An open HDF5 file and the checks every access goes through."""

    def __init__(self, file: h5py.File, size: int, budget: Budget, label: str) -> None:
        self.file, self.size, self.budget, self.label = file, size, budget, label

    def __enter__(self) -> H5File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()

    def fail(self, place: str, problem: str) -> KerasFileError:
        return self.budget.fail(": ".join(p for p in (self.label, place) if p), problem)

    # ------------------------------------------------------------ links and groups

    def keys(self, group: h5py.Group) -> list[str]:
        """The link names of ``group``, counted against the object cap before listing."""
        self.budget.count(group.name, len(group))
        names = list(group.keys())
        for name in names:
            if name in (".", ".."):
                raise self.fail(group.name, f"holds a link named {name!r}; refused")
        return names

    def has(self, group: h5py.Group, name: str) -> bool:
        """Whether ``group`` has a link ``name``, without following it.

        ``name in group`` (h5py's ``_path_valid``, and so Keras's ``safe_get_h5_group``)
        resolves the link: an external link to a FIFO would block right there.
        """
        return bool(group.id.links.exists(name.encode("utf-8")))

    def child(self, parent: h5py.Group, name: str, kind: type | None = None) -> Any:
        """``parent[name]`` when it is a hard link (to a ``kind``); never follows anything else."""
        where = f"{parent.name.rstrip('/')}/{name}"
        if not name or name in (".", ".."):
            raise self.fail(where, f"path component {name!r}; expected a plain name")
        if not self.has(parent, name):
            raise self.fail(where, "is missing")
        key, links = name.encode("utf-8"), parent.id.links
        kind_code = links.get_info(key).type
        if kind_code != h5py.h5l.TYPE_HARD:
            if kind_code == h5py.h5l.TYPE_EXTERNAL:
                file, path = links.get_val(key)
                what = f"an external link to {file.decode(errors='replace')!r} {path.decode(errors='replace')!r}"
            elif kind_code == h5py.h5l.TYPE_SOFT:
                what = f"a soft link to {links.get_val(key).decode(errors='replace')!r}"
            else:
                what = f"a user-defined link (type {kind_code})"
            raise self.fail(where, f"is {what}; only hard links are followed")
        obj = parent[name]
        if kind is not None and not isinstance(obj, kind):
            raise self.fail(where, f"is an HDF5 {type(obj).__name__}; expected a {kind.__name__}")
        return obj

    def get(self, group: h5py.Group, path: str, kind: type | None = None) -> Any:
        """A relative path walked one hard link at a time (absolute paths are refused)."""
        if path.startswith("/"):
            raise self.fail(group.name, f"the name {path!r} is absolute; expected a relative one")
        obj: Any = group
        for part in path.split("/"):
            if not isinstance(obj, h5py.Group):
                raise self.fail(obj.name, f"is a dataset, so {path!r} cannot be inside it")
            obj = self.child(obj, part)
        if kind is not None and not isinstance(obj, kind):
            raise self.fail(
                obj.name, f"is an HDF5 {type(obj).__name__}; expected a {kind.__name__}"
            )
        return obj

    # ------------------------------------------------------------------- attributes

    def attr(self, obj: h5py.HLObject, name: str) -> Any:
        """An attribute's value (None when absent), its declared size checked first."""
        if name not in obj.attrs:
            return None
        aid = obj.attrs.get_id(name)
        declared = int(np.prod(aid.shape or ())) * aid.dtype.itemsize
        if declared > self.budget.limits.config_bytes:
            raise self.fail(
                f"{obj.name} attribute {name!r}",
                f"declares {readable(declared)}; at most "
                f"{readable(self.budget.limits.config_bytes)} is read",
            )
        return obj.attrs[name]

    def text(self, obj: h5py.HLObject, name: str) -> str | None:
        """A string attribute (``model_config``, ``keras_version``), None when absent."""
        value = self.attr(obj, name)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, str):
            return value
        raise self.fail(
            f"{obj.name} attribute {name!r}", f"holds {type(value).__name__}; expected text"
        )

    def names(self, obj: h5py.HLObject, name: str) -> list[str]:
        """``legacy_h5_format.load_attributes_from_hdf5_group``: a name list, maybe chunked."""
        keys = [name]
        if name not in obj.attrs:  # too long for one header message: name0, name1, ...
            keys = []
            while f"{name}{len(keys)}" in obj.attrs and len(keys) <= self.budget.limits.max_layers:
                keys.append(f"{name}{len(keys)}")
        out: list[str] = []
        for key in keys:
            value = np.atleast_1d(self.attr(obj, key))
            if value.size and value.dtype.kind not in "OSU":
                raise self.fail(
                    f"{obj.name} attribute {key!r}", f"holds {value.dtype}; expected names"
                )
            for item in value.ravel():
                out.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        if len(out) > self.budget.limits.max_layers:
            raise self.fail(
                f"{obj.name} attribute {name!r}",
                f"lists {len(out)} names; at most {self.budget.limits.max_layers} are read",
            )
        return out

    # --------------------------------------------------------------------- datasets

    def array(self, ds: h5py.Dataset, place: str) -> np.ndarray:
        """A weight array in native byte order; everything it declares is checked first."""
        where = ": ".join(p for p in (place, ds.name) if p)
        self._check_kind(ds, place)
        if ds.is_virtual:
            raise self.fail(place, f"{ds.name} is a virtual dataset (data from other files)")
        if ds.external:
            raise self.fail(place, f"{ds.name} keeps its data in external files {ds.external}")
        plist = ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in BUILT_IN_FILTERS:
                raise self.fail(
                    place, f"{ds.name} needs HDF5 filter {code}; only built-in filters are read"
                )
        self._check_stored(ds, place)
        nbytes = self.budget.claim_array(where, tuple(ds.shape), ds.dtype.itemsize)
        out = np.empty(ds.shape, dtype=ds.dtype.newbyteorder("="))
        if nbytes:
            ds.read_direct(out)
        self.budget.note_nonfinite(where, out)
        return out

    def _check_kind(self, ds: h5py.Dataset, place: str) -> None:
        dtype = ds.dtype
        tag = self.text(ds, "dtype") if "dtype" in ds.attrs else None
        counter = dtype.kind in "iu" and ds.shape == ()  # Normalization's count, iterations
        if tag is None and ((dtype.kind == "f" and dtype.itemsize in FLOAT_SIZES) or counter):
            return
        got = tag or ("compound" if dtype.names else str(dtype))
        raise self.fail(
            place, f"{ds.name} has dtype {got}; expected {WEIGHT_DTYPES} (or an integer scalar)"
        )

    def _check_stored(self, ds: h5py.Dataset, place: str) -> None:
        """A dataset must store (nearly) what it declares, inside this file."""
        limits = self.budget.limits
        declared = int(np.prod(ds.shape or ())) * ds.dtype.itemsize
        stored = ds.id.get_storage_size()
        if declared > limits.stored_floor and declared > limits.stored_ratio * stored:
            raise self.fail(
                place,
                f"{ds.name} declares {readable(declared)} {tuple(ds.shape)} but stores "
                f"{readable(stored)}; refused (a dataset that stores next to nothing)",
            )
        offset = ds.id.get_offset()  # contiguous data only; None otherwise
        if offset is not None and declared and stored != declared:
            raise self.fail(
                place,
                f"{ds.name} declares {readable(declared)} {tuple(ds.shape)} but its contiguous "
                f"storage holds {readable(stored)}; the file is damaged",
            )
        if stored > self.size or (offset is not None and offset + stored > self.size):
            raise self.fail(
                place,
                f"{ds.name} declares {readable(stored)} of data at byte {offset} of a "
                f"{readable(self.size)} file; refused",
            )

    # -------------------------------------------------------------- Keras 3 stores

    def vars_groups(
        self, group: h5py.Group, path: str = "", depth: int = 0
    ) -> Iterator[tuple[str, h5py.Group]]:
        """Every ``vars`` group below ``group`` as ``(path, group)``: ``("layers/conv2d", ...)``."""
        if depth > self.budget.limits.max_depth:
            raise self.fail(group.name, f"groups nested over {self.budget.limits.max_depth} deep")
        for name in self.keys(group):
            obj = self.child(group, name)
            if not isinstance(obj, h5py.Group):
                raise self.fail(obj.name, "a dataset outside any 'vars' group; not a Keras store")
            if name == "vars":
                yield path, obj
            else:
                yield from self.vars_groups(obj, f"{path}/{name}" if path else name, depth + 1)

    def vars_arrays(self, group: h5py.Group, place: str) -> dict[int, np.ndarray]:
        """A ``vars`` group's datasets by index (``save_own_variables`` names them 0, 1, ...).

        A sharded store may hold some indices of a group in one shard, the rest in another.
        """
        out = {}
        for key in self.keys(group):
            if not (key.isascii() and key.isdigit()) or key != str(int(key)):
                raise self.fail(place, f"{group.name} holds {key!r}; expected variables 0, 1, ...")
            out[int(key)] = self.array(self.child(group, key, h5py.Dataset), place)
        return out
