"""``.keras`` archives and directories, and ``model.weights.npz``, read defensively.

Part of the standalone reader (``reader.py``; the standard library and NumPy only).
Archive members are checked against the caps by what they declare, then inflated with a
running count (``zipfile``'s declared size is never trusted alone); encrypted members and
compression methods Keras does not write are refused. A directory's members must be regular
files, not symbolic links. ``model.weights.npz`` holds pickled object arrays
(``saving_lib.NpzIOStore``): they are read by a restricted unpickler that imports and calls
nothing — the only globals it knows are stand-ins that record their arguments, and arrays are
made from the bytes the pickle carries, exactly as many as their shape declares.
"""

from __future__ import annotations

import io
import os
import pickle
import stat
import struct
import zipfile
from typing import Any

import numpy as np

from torch_cnn.porting.reader_limits import Budget, readable

__all__ = ["ZIP_MAGIC", "Archive", "read_npz", "regular_file"]

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
KERAS_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
CHUNK = 1 << 20


def regular_file(path: str, budget: Budget, place: str, cap: int, *, follow: bool = False) -> int:
    """The size of ``path``, which must be a regular file (not a FIFO or device, and unless
    ``follow``, not a symbolic link: the user's own path may be one, a shard may not)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        raise budget.fail(place, f"cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise budget.fail(place, f"is {kind}; only regular files are read")
    if st.st_size > cap:
        raise budget.fail(place, f"is {readable(st.st_size)}; at most {readable(cap)} is read")
    return st.st_size


def read_regular(path: str, budget: Budget, place: str, cap: int, *, follow: bool = False) -> bytes:
    """A regular file's bytes, at most ``cap`` of them (``regular_file``; never blocking on a
    FIFO swapped in after the check)."""
    regular_file(path, budget, place, cap, follow=follow)
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise budget.fail(place, "is not a regular file; only regular files are read")
        data = fh.read(cap + 1)
    if len(data) > cap:
        raise budget.fail(place, f"holds more than {readable(cap)}; refused")
    return data


class Archive:
    """The members of a ``.keras`` zip, or of the directory ``save_model(zipped=False)`` writes."""

    def __init__(self, path: str, budget: Budget) -> None:
        self.path, self.budget = path, budget
        self.zip: zipfile.ZipFile | None = None
        if os.path.isdir(path):
            with os.scandir(path) as entries:  # links and FIFOs too: refused when read
                self.members = sorted(
                    e.name for e in entries if not e.is_dir(follow_symlinks=False)
                )
        else:
            with open(path, "rb") as fh:
                _check_central_directory(fh, budget)
            self.zip = zipfile.ZipFile(path, "r")
            self.members = self.zip.namelist()
        budget.count("the archive", len(self.members))

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.zip is not None:
            self.zip.close()

    def local_path(self, name: str) -> str | None:
        """A directory member's path (checked to be a regular file), None inside a zip."""
        if self.zip is not None:
            return None
        path = os.path.join(self.path, name)
        regular_file(path, self.budget, name, self.budget.limits.member_bytes)
        return path

    def read(self, name: str, cap: int) -> bytes:
        """A member's bytes, refused before inflating when it declares more than ``cap``."""
        if self.zip is None:
            return read_regular(os.path.join(self.path, name), self.budget, name, cap)
        return read_member(self.zip, name, self.budget, cap, f"member {name!r}")


def read_member(zf: zipfile.ZipFile, name: str, budget: Budget, cap: int, place: str) -> bytes:
    """``saving_lib._safe_zip_read``, with the caps and a running count while inflating."""
    info = zf.getinfo(name)
    limits = budget.limits
    if info.flag_bits & 0x1:
        raise budget.fail(place, "is encrypted; Keras never encrypts archive members")
    if info.compress_type not in KERAS_METHODS:
        raise budget.fail(
            place,
            f"uses compression method {info.compress_type}; Keras writes stored (0) or "
            "deflated (8) members",
        )
    declared = info.file_size
    if declared > cap:
        raise budget.fail(place, f"declares {readable(declared)}; at most {readable(cap)} is read")
    if declared > limits.ratio_floor and declared > limits.member_ratio * max(
        info.compress_size, 1
    ):
        raise budget.fail(
            place,
            f"declares {readable(declared)} from {readable(info.compress_size)} compressed "
            f"(over {limits.member_ratio}×); refused as a decompression bomb",
        )
    chunks, total = [], 0
    with zf.open(info) as fh:
        while chunk := fh.read(CHUNK):
            total += len(chunk)
            if total > declared:
                raise budget.fail(place, f"inflates past its declared {readable(declared)}")
            chunks.append(chunk)
    return b"".join(chunks)


def _check_central_directory(fh: io.BufferedReader, budget: Budget) -> None:
    """How many members and central-directory bytes a zip declares, before zipfile lists them."""
    size = fh.seek(0, os.SEEK_END)
    tail_len = min(size, 22 + 0xFFFF)
    fh.seek(size - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return  # zipfile reports a damaged archive itself
    entries, cd_size = struct.unpack("<HI", tail[at + 10 : at + 16])
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and at >= 20:  # zip64: read its record
        sig, _, offset = struct.unpack("<IIQ", tail[at - 20 : at - 4])
        if sig == 0x07064B50 and offset + 56 <= size:
            fh.seek(offset)
            record = fh.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack("<QQ", record[32:48])
    if entries > budget.limits.max_objects or cd_size > budget.limits.config_bytes:
        raise budget.fail(
            "the archive",
            f"declares {entries} members in a {readable(cd_size)} directory; at most "
            f"{budget.limits.max_objects} members and {readable(budget.limits.config_bytes)} "
            "are read",
        )


# ----------------------------------------------------------------- npz weights


def read_npz(data: bytes, budget: Budget, label: str) -> dict[str, list[np.ndarray]]:
    """``model.weights.npz``: store path (``""`` for the root) → the variables' arrays."""
    store: dict[str, list[np.ndarray]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as npz:
        names = npz.namelist()
        budget.count(label, len(names))
        for name in names:
            place = f"{label} member {name!r}"
            if not name.endswith(".npy"):
                raise budget.fail(place, "is not a .npy array; not a Keras weights npz")
            raw = read_member(npz, name, budget, budget.limits.member_bytes, place)
            path = name.removesuffix(".npy")
            store["" if path == "__root__" else path] = _npy_variables(raw, budget, place)
    return store


def _npy_variables(raw: bytes, budget: Budget, place: str) -> list[np.ndarray]:
    """One ``.npy`` of the store: a pickled ``{"0": variable, ...}`` in a 0-d object array."""
    fh = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fh)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)  # fmt: skip
        if read_header is None:
            raise budget.fail(place, f".npy format {version}; expected 1.0 or 2.0")
        shape, _, dtype = read_header(fh)
    except ValueError as exc:
        raise budget.fail(place, f"not a .npy array ({exc})") from None
    if dtype.kind != "O" or shape != ():
        raise budget.fail(place, f"holds a {dtype} array {shape}; expected a pickled dict (0-d)")
    try:
        root = _Unpickler(fh, budget, place).load()
    except pickle.UnpicklingError as exc:
        raise budget.fail(place, f"pickle refused: {exc}") from None
    content = _objects(root, budget, place)
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise budget.fail(place, f"holds a {type(content).__name__}; expected a dict of variables")
    keys = sorted(content, key=lambda k: (len(k), k))
    if keys != [str(i) for i in range(len(keys))]:
        raise budget.fail(place, f"holds keys {keys[:10]}; expected variables named 0, 1, ...")
    return [_variable(content[k], budget, f"{place} variable {k}") for k in keys]


class _Stub:
    """What a pickle may build: objects that record their arguments and run nothing."""

    args: tuple[Any, ...] = ()  # NEWOBJ builds without calling __init__
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - never mutated
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayStub(_Stub):
    """``numpy._core.multiarray._reconstruct(ndarray, shape, typecode)``; data comes by BUILD."""


class _DtypeStub(_Stub):
    """``numpy.dtype(descr, align, copy)``; the byte order comes by BUILD."""


class _VariableStub(_Stub):
    """``keras.src.backend.Variable`` (pickled by ``NpzIOStore``): a dict of its attributes."""


class _PartialStub(_Stub):
    """``functools.partial`` (TensorFlow pickles its variables as a partial): never calls."""

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub(self, *args, **kwargs)


class _Marker(_Stub):
    """A class or function a pickle names as an argument (``numpy.ndarray``), never called."""


def _as_dtype(name: Any) -> str:  # tensorflow.python.framework.dtypes.as_dtype
    return str(name)


_MULTIARRAY = ("numpy._core.multiarray", "numpy.core.multiarray")  # NumPy 2, NumPy 1
_GLOBALS: dict[tuple[str, str], Any] = {
    **{(m, "_reconstruct"): _ArrayStub for m in _MULTIARRAY},
    ("numpy", "ndarray"): _Marker("numpy.ndarray"),
    ("numpy", "dtype"): _DtypeStub,
    ("keras.src.backend", "Variable"): _VariableStub,
    ("functools", "partial"): _PartialStub,
    ("tensorflow.python.ops.resource_variable_ops", "ResourceVariable"): _Marker("tf.Variable"),
    ("tensorflow.python.framework.dtypes", "as_dtype"): _as_dtype,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, fh: io.BytesIO, budget: Budget, place: str) -> None:
        super().__init__(fh)
        self.budget, self.place = budget, place

    def find_class(self, module: str, name: str) -> Any:
        self.budget.count(self.place)
        if (module, name) not in _GLOBALS:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}; only NumPy arrays and Keras variables are read "
                "(nothing a file names is imported or called)"
            )
        return _GLOBALS[module, name]

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not read")


def _objects(obj: Any, budget: Budget, place: str) -> Any:
    """The 0-d object array's one item."""
    if not isinstance(obj, _ArrayStub) or not isinstance(obj.state, tuple) or len(obj.state) != 5:
        raise budget.fail(place, "the pickle is not a NumPy array")
    _, shape, dtype, _, items = obj.state
    if shape != () or not isinstance(dtype, _DtypeStub) or dtype.args[:1] != ("O8",):
        raise budget.fail(place, f"the pickled array is {dtype.args[:1]} {shape}; expected 0-d O8")
    if not isinstance(items, list) or len(items) != 1:
        raise budget.fail(place, "the pickled object array does not hold one item")
    return items[0]


def _variable(obj: Any, budget: Budget, place: str) -> np.ndarray:
    """A variable's value: an array, or a Keras variable holding one (TensorFlow's or NumPy's)."""
    if isinstance(obj, _ArrayStub):
        return _array(obj, budget, place)
    state = obj.state if isinstance(obj, _VariableStub) else None
    if not isinstance(state, dict):
        raise budget.fail(place, f"is a {type(obj).__name__}; expected an array or a variable")
    value = state.get("_value")
    if type(value) is _Stub and value.args and isinstance(value.args[0], _PartialStub):
        partial = value.args[0]  # TensorFlow: partial(ResourceVariable)(), kwargs set by BUILD
        if not isinstance(partial.state, tuple) or len(partial.state) != 4:
            raise budget.fail(place, "a TensorFlow variable without its arguments")
        value = (partial.state[2] or {}).get("initial_value")
    if not isinstance(value, _ArrayStub):
        raise budget.fail(place, "a Keras variable without an array value")
    array = _array(value, budget, place)
    want = state.get("_shape")
    if want is not None and tuple(want) != array.shape:
        raise budget.fail(place, f"holds shape {array.shape}; the variable says {tuple(want)}")
    return array


def _array(obj: _ArrayStub, budget: Budget, place: str) -> np.ndarray:
    """An array from the bytes the pickle carries: exactly as many as its shape declares."""
    state = obj.state
    if not isinstance(state, tuple) or len(state) != 5 or not isinstance(state[2], _DtypeStub):
        raise budget.fail(place, "an array without its data; refused")
    _, shape, dtype_stub, fortran, data = state
    descr, order = dtype_stub.args[:1], dtype_stub.state
    if (
        not isinstance(shape, tuple)
        or not all(isinstance(d, int) for d in shape)
        or len(descr) != 1
        or descr[0] not in _NUMERIC
        or not isinstance(order, tuple)
        or order[1:2] not in (("<",), (">",), ("|",), ("=",))
    ):
        raise budget.fail(place, f"an array of {descr} {shape}; expected a float array")
    dtype = np.dtype(descr[0]).newbyteorder(order[1])
    if not (dtype.kind == "f" or shape == ()):
        raise budget.fail(place, f"holds dtype {dtype}; expected float16, float32 or float64")
    nbytes = budget.claim_array(place, shape, dtype.itemsize)
    if not isinstance(data, bytes) or len(data) != nbytes:
        got = len(data) if isinstance(data, bytes) else type(data).__name__
        raise budget.fail(place, f"declares {shape} {dtype} ({nbytes} bytes) but carries {got}")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    out = np.ascontiguousarray(array, dtype=dtype.newbyteorder("="))
    budget.note_nonfinite(place, out)
    return out


_NUMERIC = {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8"}
