"""``.keras`` archives and directories, and ``model.weights.npz``, read defensively.

Part of the standalone reader (``reader.py``; the standard library and NumPy only).
Archive members are checked against the caps by what they declare, then inflated with a
running count (``zipfile``'s declared size is never trusted alone); encrypted members and
compression methods Keras does not write are refused. A directory's members must be regular
files, not symbolic links. ``model.weights.npz`` holds pickled object arrays
(``saving_lib.NpzIOStore``): they are read by ``torch_cnn._safe_pickle``, which imports and
calls nothing — Keras's and TensorFlow's globals unpickle to stand-ins that record their
arguments, and arrays are made from the bytes the pickle carries, exactly as many as their
shape declares.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile

import numpy as np

from torch_cnn import _safe_pickle
from torch_cnn._safe_pickle import StandIn
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
    content = _objects(_unpickle(fh, len(raw) - fh.tell(), budget, place), budget, place)
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise budget.fail(place, f"holds a {type(content).__name__}; expected a dict of variables")
    keys = sorted(content, key=lambda k: (len(k), k))
    if keys != [str(i) for i in range(len(keys))]:
        raise budget.fail(place, f"holds keys {keys[:10]}; expected variables named 0, 1, ...")
    budget.count(place, len(keys))
    return [_variable(content[k], budget, f"{place} variable {k}") for k in keys]


class _Variable(StandIn):
    """``keras.src.backend.Variable`` (pickled by ``NpzIOStore``): its attributes by BUILD."""


class _Partial(StandIn):
    """``functools.partial``: TensorFlow pickles its variables as ``partial(ResourceVariable)()``,
    the arguments (``initial_value``) by BUILD."""


class _ResourceVariable(StandIn):
    """TensorFlow's ``ResourceVariable``, which the partial names."""


class _AsDtype(StandIn):
    """``tensorflow.python.framework.dtypes.as_dtype(name)``, a variable's dtype argument."""


# The globals a Keras weights pickle names besides NumPy's (which ``_safe_pickle`` rebuilds
# itself): inert records, nothing imported or called.
_STAND_INS: _safe_pickle.StandIns = {
    ("keras.src.backend", "Variable"): _Variable,
    ("functools", "partial"): _Partial,
    ("tensorflow.python.ops.resource_variable_ops", "ResourceVariable"): _ResourceVariable,
    ("tensorflow.python.framework.dtypes", "as_dtype"): _AsDtype,
}


def _unpickle(fh: io.BytesIO, size: int, budget: Budget, place: str) -> object:
    """The ``.npy``'s pickle, read by ``_safe_pickle`` with the file's per-array cap."""
    limits = _safe_pickle.PickleLimits(
        max_array_bytes=budget.limits.array_bytes, allow_object_arrays=True
    )
    try:
        return _safe_pickle.load(fh, size, limits=limits, encoding="ASCII", stand_ins=_STAND_INS)
    except _safe_pickle.RefusedGlobalError as exc:
        raise budget.fail(
            place,
            f"it names {exc.name}; only NumPy arrays and Keras variables are read (nothing a "
            "file names is imported or called)",
        ) from None
    except _safe_pickle.SafePickleError as exc:
        raise budget.fail(place, f"pickle refused: {exc}") from None


def _objects(root: object, budget: Budget, place: str) -> object:
    """The 0-d object array's one item."""
    if not isinstance(root, np.ndarray):
        raise budget.fail(place, "the pickle is not a NumPy array")
    if root.shape != () or not root.dtype.hasobject:
        raise budget.fail(place, f"the pickled array is {root.dtype} {root.shape}; expected 0-d O8")
    return root[()]


def _variable(obj: object, budget: Budget, place: str) -> np.ndarray:
    """A variable's value: an array, or a Keras variable holding one (TensorFlow's or NumPy's)."""
    if isinstance(obj, np.ndarray):
        return _array(obj, budget, place)
    state = obj.state if isinstance(obj, _Variable) else None
    if not isinstance(state, dict):
        raise budget.fail(place, f"is a {type(obj).__name__}; expected an array or a variable")
    value = state.get("_value")
    if type(value) is StandIn and value.args and isinstance(value.args[0], _Partial):
        # TensorFlow: partial(ResourceVariable)(); BUILD gave the partial (func, args, kwargs, dict)
        built = value.args[0].state
        if not (isinstance(built, tuple) and len(built) == 4 and isinstance(built[2], dict | None)):
            raise budget.fail(place, "a TensorFlow variable without its arguments")
        value = (built[2] or {}).get("initial_value")
    if not isinstance(value, np.ndarray):
        raise budget.fail(place, "a Keras variable without an array value")
    array = _array(value, budget, place)
    want = state.get("_shape")
    if want is not None and (not isinstance(want, tuple | list) or tuple(want) != array.shape):
        raise budget.fail(place, f"holds shape {array.shape}; the variable says {want}")
    return array


def _array(value: np.ndarray, budget: Budget, place: str) -> np.ndarray:
    """A float array (or an integer scalar: a counter), counted against the file's caps, in
    the machine's byte order; ``_safe_pickle`` made it from exactly the bytes its shape needs."""
    dtype = value.dtype
    if not (dtype.kind == "f" or (value.shape == () and dtype.kind in "iu")):
        raise budget.fail(place, f"holds dtype {dtype}; expected float16, float32 or float64")
    budget.claim_array(place, value.shape, dtype.itemsize)
    out = np.ascontiguousarray(value, dtype=dtype.newbyteorder("="))
    budget.note_nonfinite(place, out)
    return out
