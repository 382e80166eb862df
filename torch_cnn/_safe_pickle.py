"""Unpickling untrusted files that hold plain data: dicts, lists, tuples, str, bytes, numbers, numpy arrays.

``pickle.load`` calls whatever a file names. Allowing only numpy's array globals in
``find_class`` is not enough: with ``_reconstruct``, ``ndarray`` and ``dtype`` a 327-byte
file allocates arrays of any shape with no data behind them, and the C unpickler segfaults
hashing a deeply nested tuple key. This reader (the pure-Python unpickler, its opcodes
replaced) checks every step before it allocates:

- Globals: numpy's array reconstruction, ``_codecs.encode(str, 'latin1')`` and ``bytes()``
  (Python 3's bytes at protocols 0-2), none handed out as the real callable: ``_reconstruct``
  gives only the ``(0,)`` placeholder numpy pickles, ``ndarray`` is a token nothing can
  call, ``dtype`` builds only plain numeric dtypes. Instance, set, extension, persistent-id
  and buffer opcodes are refused; ``BUILD`` applies only to numpy's placeholders.
- Pickled objects (Keras's ``.npz`` weights): a caller may map more globals to ``StandIn``
  classes, inert records of how the pickle calls, creates (``NEWOBJ``, then allowed on
  them only) and builds them. Nothing is imported and nothing from the file runs. Empty
  sets are then allowed too (Keras's trackables hold one); filling a set stays refused.
- An array exists only with its bytes in the input: its state holds exactly
  ``prod(shape) * itemsize`` bytes (an object array, ``prod(shape)`` items), and all arrays
  together hold no more bytes than the input (a memoised buffer is not rebuilt twice).
- ``PickleLimits``: opcodes (each makes at most one small object, so memory stays
  proportional to the input), bytes per array, nesting depth; cycles are refused; dict
  keys are str, bytes or int; declared lengths are checked against what remains. The memo
  is a dict: the C unpickler sizes its table by the largest index (2**31: 16 GiB).

Every problem raises ``SafePickleError`` (``PickleLimitError`` for a refusal or a cap,
``RefusedGlobalError`` for a global) with the byte offset; ``OSError`` from the file passes
through. Standard library and numpy only (no torch), so any reader, in any process, can use
it (the Keras file reader's child process does).

>>> import pickle
>>> import numpy as np
>>> loads(pickle.dumps({"w": np.arange(3, dtype=np.float32)}))["w"]
array([0., 1., 2.], dtype=float32)
>>> loads(b"\\x80\\x02cos\\nsystem\\nq\\x00.")
Traceback (most recent call last):
...
torch_cnn._safe_pickle_base.RefusedGlobalError: at byte 13: global os.system is not allowed ...
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable, Mapping
from typing import IO, Any, ClassVar, cast

import numpy as np

from torch_cnn._safe_pickle_base import (
    DEFAULT_LIMITS,
    NDARRAY,
    PickleLimitError,
    PickleLimits,
    RefusedGlobalError,
    SafePickleError,
    StandIn,
    brief,
    check_nesting,
    describe,
)

__all__ = [
    "DEFAULT_LIMITS",
    "PickleLimitError",
    "PickleLimits",
    "RefusedGlobalError",
    "SafePickleError",
    "StandIn",
    "StandIns",
    "describe",
    "load",
    "loads",
]

StandIns = Mapping[tuple[str, str], type[StandIn]]
"""Globals a caller allows, ``(module, name)``, and the inert class each unpickles to."""

# The dtypes numpy pickles for plain numeric arrays (``dtype.__reduce__``'s first argument).
_NUMERIC_DTYPES = frozenset(
    ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
)
_OBJECT_DTYPE = "O8"
_MAX_NDIM = 32
_BYTE_ORDERS = frozenset("<>|=")

# pickle opcodes never needed for plain data, and why.
_REFUSED_OPCODES: dict[int, str] = {
    getattr(pickle, name)[0]: f"opcode {name} is not allowed ({why})"
    for names, why in (
        (("INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"), "it builds instances"),
        (("EMPTY_SET", "ADDITEMS", "FROZENSET"), "it builds sets"),
        (("EXT1", "EXT2", "EXT4"), "it names globals by extension code"),
        (("PERSID", "BINPERSID"), "persistent ids are not read"),
        (("NEXT_BUFFER", "READONLY_BUFFER"), "out-of-band buffers are not read"),
    )
    for name in names
}
# With stand-ins: NEWOBJ (on a stand-in class only) and an empty set.
_STAND_IN_OPCODES = frozenset([pickle.NEWOBJ[0], pickle.EMPTY_SET[0]])


class _Source:
    """``read``/``readline`` over ``file`` that never read past ``size`` and fail on short reads."""

    def __init__(self, file: IO[bytes], size: int) -> None:
        self._file = file
        self.size = size
        self.pos = 0

    def read(self, n: int) -> bytes:
        left = self.size - self.pos
        if n > left and n > 8:  # a declared length, not an opcode or a length field
            raise SafePickleError(
                f"at byte {self.pos}: declares {describe(n)} bytes, {left} remain"
            )
        data = self._file.read(n) if n <= left else b""
        if len(data) != n:
            raise SafePickleError(f"at byte {self.pos}: the data ended early")
        self.pos += n
        return data

    def readline(self) -> bytes:
        line = self._file.readline(self.size - self.pos)
        self.pos += len(line)
        return line


def _text(value: object) -> object:
    # Python 2 pickles read with encoding="bytes" give their str as bytes.
    return value.decode("ascii", "replace") if type(value) is bytes else value


def _is_text(value: object, *options: str) -> bool:
    text = _text(value)
    return type(text) is str and text in options


def _is_flag(value: object, expected: int) -> bool:
    # numpy writes False/True; Python 2's numpy wrote 0/1.
    return type(value) in (bool, int) and value == expected


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
    # Python 3 pickles bytes at protocols 0-2 as _codecs.encode(str, 'latin1'); only that.
    if type(text) is not str or _text(encoding) != "latin1":
        raise SafePickleError(
            f"_codecs.encode({describe(text)}, {describe(encoding)}): only a str and 'latin1' "
            f"(how Python 3 pickles bytes)"
        )
    return text.encode("latin1")


def _empty_bytes() -> bytes:
    # ... and b"" at protocols 0-2 as bytes() (``__builtin__.bytes`` with fix_imports).
    return b""


# pickle's pure-Python Unpickler, whose opcodes can be replaced (the C one's cannot); typeshed
# types it loosely, so it is taken as Any.
_PyUnpickler: Any = pickle._Unpickler


class _Unpickler(_PyUnpickler):  # type: ignore[misc]
    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(_PyUnpickler.dispatch)

    def __init__(
        self, source: _Source, limits: PickleLimits, encoding: str, stand_ins: StandIns
    ) -> None:
        super().__init__(source, encoding=encoding)
        self._source = source
        self._limits = limits
        self._refused = {
            op: why
            for op, why in _REFUSED_OPCODES.items()
            if not (stand_ins and op in _STAND_IN_OPCODES)
        }
        self._array_bytes = 0
        # Placeholders waiting for their BUILD, by id (the dict keeps them alive, so ids are unique).
        self._pending_arrays: dict[int, np.ndarray[Any, Any]] = {}
        self._pending_dtypes: dict[int, np.dtype[Any]] = {}
        self._built_dtypes: dict[int, np.dtype[Any]] = {}
        rebuild, frombuffer, dtype = self._reconstruct, self._frombuffer, self._dtype
        self._globals: dict[tuple[str, str], object] = {
            ("numpy.core.multiarray", "_reconstruct"): rebuild,
            ("numpy._core.multiarray", "_reconstruct"): rebuild,
            ("numpy.core.numeric", "_frombuffer"): frombuffer,
            ("numpy._core.numeric", "_frombuffer"): frombuffer,
            ("numpy", "ndarray"): NDARRAY,
            ("numpy", "dtype"): dtype,
            ("_codecs", "encode"): _latin1_encode,
            ("builtins", "bytes"): _empty_bytes,
            ("__builtin__", "bytes"): _empty_bytes,
        }
        # What REDUCE may call: these very objects, compared by identity.
        self._callables = [f for f in self._globals.values() if f is not NDARRAY]
        self._globals.update(stand_ins)
        self._stand_ins = tuple(stand_ins.values())
        self._allowed = "numpy's array reconstruction, _codecs.encode and bytes" + "".join(
            f", {module}.{name}" for module, name in sorted(stand_ins)
        )

    def load(self) -> Any:
        # pickle._Unpickler.load, with a budget of opcodes and refused opcodes named.
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[list[Any]] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        budget = self._limits.max_ops
        try:
            while True:
                key = read(1)
                if not key:
                    raise SafePickleError(f"{self._where()}: the data ended early")
                budget -= 1
                if budget < 0:
                    raise PickleLimitError(
                        f"{self._where()}: more than {self._limits.max_ops} opcodes"
                    )
                op = key[0]
                if op in self._refused:
                    raise PickleLimitError(f"at byte {self._source.pos - 1}: {self._refused[op]}")
                handler = dispatch.get(op)
                if handler is None:
                    raise SafePickleError(f"at byte {self._source.pos - 1}: invalid opcode {key!r}")
                handler(self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value

    def find_class(self, module: str, name: str) -> Any:
        found = self._globals.get((module, name))
        if found is None:
            shown = f"{ascii(module[:100])[1:-1]}.{ascii(name[:100])[1:-1]}"
            raise RefusedGlobalError(
                f"at byte {self._source.pos}: global {shown} is not allowed (only {self._allowed})",
                shown,
            )
        return found

    def _where(self) -> str:
        return f"at byte {self._source.pos}"

    def _is_stand_in_class(self, value: object) -> bool:
        return any(value is cls for cls in self._stand_ins)

    def _args(self, args: object, opcode: str) -> tuple[Any, ...]:
        if type(args) is not tuple:
            raise SafePickleError(f"{self._where()}: {opcode} with arguments {describe(args)}")
        return args

    def _stand_in(self, cls: type[StandIn], args: tuple[Any, ...]) -> StandIn:
        """A new ``cls`` recording ``args``, made here: nothing ``cls`` defines runs."""
        made: StandIn = object.__new__(cls)
        StandIn.__init__(made, args)
        return made

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if self._is_stand_in_class(func):
            made = self._stand_in(func, self._args(args, "REDUCE"))
        elif isinstance(func, StandIn):  # calling what a stand-in built: recorded as well
            made = self._stand_in(StandIn, (func, *self._args(args, "REDUCE")))
        elif any(func is f for f in self._callables):
            made = func(*self._args(args, "REDUCE"))
        else:
            raise SafePickleError(f"{self._where()}: REDUCE calls {describe(func)}")
        self.stack[-1] = made

    def _load_newobj(self) -> None:
        # Reached only with stand-ins (refused otherwise), and only for a stand-in class.
        args = self.stack.pop()
        cls = self.stack[-1]
        if not self._is_stand_in_class(cls):
            raise SafePickleError(f"{self._where()}: NEWOBJ on {describe(cls)}")
        self.stack[-1] = self._stand_in(cls, self._args(args, "NEWOBJ"))

    def _load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        dtype = self._pending_dtypes.get(id(inst))
        array = self._pending_arrays.get(id(inst))
        if isinstance(inst, StandIn):
            if inst.state is not None:
                raise SafePickleError(f"{self._where()}: BUILD twice on {describe(inst)}")
            inst.state = state
        elif dtype is not None and dtype is inst:
            self._build_dtype(dtype, state)
        elif array is not None and array is inst:
            self._build_array(array, state)
        else:
            raise SafePickleError(
                f"{self._where()}: BUILD on {describe(inst)} (only numpy's placeholders are rebuilt)"
            )

    def _check_key(self, key: object) -> None:
        if type(key) not in (str, bytes, int):
            raise PickleLimitError(
                f"{self._where()}: dict key {describe(key)} (only str, bytes and int keys)"
            )

    def _target(self, kind: type) -> Any:
        target = self.stack[-1]
        if type(target) is not kind:
            raise SafePickleError(f"{self._where()}: adds items to {describe(target)}")
        return target

    def _load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        self._check_key(key)
        self._target(dict)[key] = value

    def _pairs(self, items: list[Any], opcode: str) -> None:
        if len(items) % 2:
            raise SafePickleError(f"{self._where()}: {opcode} with an odd number of items")
        for key in items[::2]:
            self._check_key(key)

    def _load_setitems(self) -> None:
        items = self.pop_mark()
        self._pairs(items, "SETITEMS")
        target = self._target(dict)
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    def _load_dict(self) -> None:
        items = self.pop_mark()
        self._pairs(items, "DICT")
        self.append({items[i]: items[i + 1] for i in range(0, len(items), 2)})

    def _load_append(self) -> None:
        value = self.stack.pop()
        self._target(list).append(value)

    def _load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list).extend(items)

    def _load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._source.size:  # never allocate more than the input could hold
            raise SafePickleError(f"{self._where()}: BYTEARRAY8 declares {n} bytes")
        buf = bytearray(n)
        self.readinto(buf)
        self.append(buf)

    def _reconstruct(self, cls: object, shape: object, typecode: object) -> np.ndarray[Any, Any]:
        """``numpy._core.multiarray._reconstruct``: only the empty placeholder numpy pickles."""
        placeholder_shape = type(shape) is tuple and shape == (0,) and type(shape[0]) is int
        if cls is not NDARRAY or not placeholder_shape or not _is_text(typecode, "b"):
            raise SafePickleError(
                f"{self._where()}: numpy _reconstruct({describe(cls)}, {describe(shape)}, "
                f"{describe(typecode)}): arrays are rebuilt only from numpy's placeholder "
                f"_reconstruct(ndarray, (0,), b'b'), with their bytes in the file"
            )
        placeholder: np.ndarray[Any, Any] = np.ndarray((0,), np.int8)
        self._pending_arrays[id(placeholder)] = placeholder
        return placeholder

    def _dtype(self, spec: object, align: object = False, copy: object = True) -> np.dtype[Any]:
        """``numpy.dtype(spec, align, copy)`` for the plain dtypes numpy pickles; a fresh copy."""
        name = _text(spec)
        allowed = type(name) is str and (
            name in _NUMERIC_DTYPES or (name == _OBJECT_DTYPE and self._limits.allow_object_arrays)
        )
        if not (allowed and _is_flag(align, 0) and _is_flag(copy, 1)):
            what = "object arrays are not allowed here" if name == _OBJECT_DTYPE else None
            raise PickleLimitError(
                f"{self._where()}: numpy dtype({describe(spec)}, {describe(align)}, "
                f"{describe(copy)}): {what or 'only plain bool, int, uint, float and complex dtypes'}"
            )
        dtype: np.dtype[Any] = np.dtype(str(name), align=False, copy=True)  # not numpy's shared one
        self._pending_dtypes[id(dtype)] = dtype
        return dtype

    def _build_dtype(self, dtype: np.dtype[Any], state: object) -> None:
        # numpy writes (3, order, None, None, None, -1, -1, flags); older versions 7 or 9 fields.
        bad = f"{self._where()}: numpy dtype {dtype.str[1:]} with state {describe(state)}"
        if type(state) is not tuple or len(state) not in (7, 8, 9):
            raise SafePickleError(bad)
        version, order, subarray, names, fields, elsize, alignment = state[:7]
        flags = state[7] if len(state) >= 8 else dtype.flags
        metadata = state[8] if len(state) == 9 else None
        order = _text(order)
        plain = (
            all(type(v) is int for v in (version, elsize, alignment, flags))
            and all(v is None for v in (subarray, names, fields, metadata))
            and 1 <= version <= 4
            and order in _BYTE_ORDERS
            and (order == "|") == (dtype.itemsize == 1 or dtype.hasobject)
            and elsize in (-1, dtype.itemsize)
            and alignment in (-1, dtype.alignment)
            and flags == dtype.flags
        )
        if not plain:
            raise SafePickleError(f"{bad}: expected a plain dtype's state")
        dtype.__setstate__((3, order, None, None, None, -1, -1, dtype.flags))  # type: ignore[attr-defined]
        del self._pending_dtypes[id(dtype)]
        self._built_dtypes[id(dtype)] = dtype

    def _check_dtype(self, dtype: object) -> np.dtype[Any]:
        if not isinstance(dtype, np.dtype) or self._built_dtypes.get(id(dtype)) is not dtype:
            raise SafePickleError(
                f"{self._where()}: array dtype {describe(dtype)} (expected a built dtype)"
            )
        return dtype

    def _check_shape(self, shape: object, dtype: np.dtype[Any]) -> tuple[tuple[int, ...], int]:
        """``(shape, number of items)``, refused before anything is allocated for it."""
        if (
            type(shape) is not tuple
            or len(shape) > _MAX_NDIM
            or not all(type(d) is int and d >= 0 for d in shape)
        ):
            raise SafePickleError(f"{self._where()}: array shape {describe(shape)}")
        cap = self._limits.max_array_bytes
        # A dimension over the cap is refused before the dimensions are multiplied.
        nbytes = math.prod(shape) * dtype.itemsize if max(shape, default=0) <= cap else cap + 1
        if nbytes > cap:
            raise PickleLimitError(
                f"{self._where()}: a {dtype} array of shape {describe(shape)} exceeds the "
                f"cap of {cap} bytes per array"
            )
        return shape, nbytes // dtype.itemsize

    def _count_bytes(self, nbytes: int) -> None:
        self._array_bytes += nbytes
        if self._array_bytes > self._source.size:
            raise PickleLimitError(
                f"{self._where()}: its arrays hold {self._array_bytes} bytes, more than the "
                f"{self._source.size} bytes of the input (a buffer rebuilt more than once)"
            )

    def _build_array(self, array: np.ndarray[Any, Any], state: object) -> None:
        # (version 1, shape, dtype, is_fortran, data), or the 4-tuple older numpy wrote.
        if type(state) is not tuple or len(state) not in (4, 5) or state[:-4] not in ((), (1,)):
            raise SafePickleError(f"{self._where()}: numpy array state {describe(state)}")
        shape_, dtype_, fortran, rawdata = state[-4:]
        dtype = self._check_dtype(dtype_)
        shape, count = self._check_shape(shape_, dtype)
        if not (_is_flag(fortran, 0) or _is_flag(fortran, 1)):
            raise SafePickleError(f"{self._where()}: numpy array order flag {describe(fortran)}")
        if dtype.hasobject:
            if type(rawdata) is not list or len(rawdata) != count:
                raise SafePickleError(
                    f"{self._where()}: an object array of shape {shape} needs a list of {count} "
                    f"items; received {describe(rawdata)}"
                )
            # An object array holding another one would free recursively in C (no trashcan).
            for item in rawdata:
                if isinstance(item, np.ndarray) and (
                    item.dtype.hasobject or self._pending_arrays.get(id(item)) is item
                ):
                    raise PickleLimitError(
                        f"{self._where()}: an object array inside an object array"
                    )
            self._count_bytes(count * dtype.itemsize)
        else:
            if type(rawdata) is str:
                rawdata = rawdata.encode("latin1")  # Python 2 str read with encoding="latin1"
            if type(rawdata) not in (bytes, bytearray):
                raise SafePickleError(f"{self._where()}: numpy array data {describe(rawdata)}")
            nbytes = count * dtype.itemsize
            if len(rawdata) != nbytes:
                raise SafePickleError(
                    f"{self._where()}: a {dtype} array of shape {shape} needs {nbytes} bytes; "
                    f"its data holds {len(rawdata)}"
                )
            self._count_bytes(nbytes)
        cast(Any, array).__setstate__((1, shape, dtype, bool(fortran), rawdata))
        del self._pending_arrays[id(array)]

    def _frombuffer(
        self, buf: object, dtype_: object, shape_: object, order: object
    ) -> np.ndarray[Any, Any]:
        """``numpy._core.numeric._frombuffer`` (protocol 5), with the buffer's size checked."""
        dtype = self._check_dtype(dtype_)
        shape, count = self._check_shape(shape_, dtype)
        if dtype.hasobject or type(buf) not in (bytes, bytearray) or not _is_text(order, "C", "F"):
            raise SafePickleError(
                f"{self._where()}: numpy _frombuffer({describe(buf)}, {dtype}, {describe(order)})"
            )
        assert isinstance(buf, bytes | bytearray)
        if len(buf) != count * dtype.itemsize:
            raise SafePickleError(
                f"{self._where()}: a {dtype} array of shape {shape} needs "
                f"{count * dtype.itemsize} bytes; its buffer holds {len(buf)}"
            )
        self._count_bytes(len(buf))
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order=_text(order))  # type: ignore[call-overload, no-any-return]


# The opcodes replaced: _Unpickler._load_<name> for each.
for _name in ("REDUCE", "NEWOBJ", "BUILD", "SETITEM", "SETITEMS", "DICT", "APPEND", "APPENDS",
              "BYTEARRAY8"):  # fmt: skip
    _Unpickler.dispatch[getattr(pickle, _name)[0]] = getattr(_Unpickler, f"_load_{_name.lower()}")


def load(
    file: IO[bytes],
    size: int,
    *,
    limits: PickleLimits = DEFAULT_LIMITS,
    encoding: str = "bytes",
    stand_ins: StandIns | None = None,
) -> object:
    """Unpickle ``size`` bytes of ``file`` (its length: nothing past it is read) as plain data.

    ``encoding`` is pickle's, for Python 2 ``str``: ``"bytes"`` (as Keras reads CIFAR-10),
    ``"latin1"`` or ``"ASCII"``. Arrays are what numpy's own unpickling gives (a protocol-5
    array from a bytes buffer is read-only). ``stand_ins`` admits more globals as inert
    ``StandIn`` records (see the module docstring), for pickled objects rather than data.
    Raises ``SafePickleError`` (``PickleLimitError`` for a refusal or a cap) naming the
    byte offset; ``OSError`` from ``file`` itself passes through.
    """
    source = _Source(file, size)
    unpickler = _Unpickler(source, limits, encoding, stand_ins or {})
    try:
        result = unpickler.load()
        check_nesting(result, limits.max_depth)
        return result
    except (SafePickleError, OSError):
        raise
    except Exception as exc:  # whatever a corrupt stream makes pickle raise
        raise SafePickleError(f"at byte {source.pos}: {type(exc).__name__}: {brief(exc)}") from exc


def loads(
    data: bytes | bytearray | memoryview,
    *,
    limits: PickleLimits = DEFAULT_LIMITS,
    encoding: str = "bytes",
    stand_ins: StandIns | None = None,
) -> object:
    """``load`` from bytes in memory (e.g. a member read from a zip with a size limit)."""
    view = memoryview(data)
    return load(
        io.BytesIO(view), view.nbytes, limits=limits, encoding=encoding, stand_ins=stand_ins
    )
