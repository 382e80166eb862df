"""A hostile CIFAR-10 corpus: data directories and archives that ``torch_cnn.data`` must refuse.

Issue 16's classes, each with cases below and above its caps: memory claimed before
validation (arrays with no data behind them, declared lengths, floods of objects, sparse
files over the size caps, tar bombs), crashes where a clear error belongs (special files,
bad ``batches.meta``, recursion, cycles, empty splits), and silently wrong results
(labels of -100, floats, bools, huge ints, images of the wrong dtype).

Each ``case_*`` function writes one case under a directory and returns its ``Case``: what
to load and what must happen (the error class, a pattern for the problem, the path the
message must name). The tests call them into ``tmp_path``; ``--check`` loads every case in
a child process under a memory limit, which is how the tests run them too::

    python scripts/make_hostile_data.py OUT            # write the corpus under OUT/
    python scripts/make_hostile_data.py --check OUT    # load each case; one JSON line per case
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from torch_cnn import data  # noqa: E402

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SMALL_N = 3  # images per batch in the base directory
GiB, MiB = 1 << 30, 1 << 20


class Case(NamedTuple):
    """One hostile input: ``kind`` "dir" is loaded with ``load_cifar10(path)``, "tar" is
    extracted with ``extract_tarball(path, dest, **kwargs)``. ``error`` is the expected class,
    ``problem`` a regex the message must match, ``names`` the path the message must name."""

    name: str
    kind: str
    path: str
    error: str
    problem: str
    names: str
    kwargs: dict[str, int] = {}  # noqa: RUF012 - never mutated


# ---------------------------------------------------------------------------------------------
# Pickle opcodes written by hand (what a hostile file can say that pickle.dumps never would)


def op_bytes(value: bytes) -> bytes:
    if len(value) < 256:
        return pickle.SHORT_BINBYTES + bytes([len(value)]) + value
    return pickle.BINBYTES + struct.pack("<I", len(value)) + value


def op_str(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def op_int(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return pickle.BININT + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(raw)]) + raw


def op_global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def op_tuple(*items: bytes) -> bytes:
    return pickle.MARK + b"".join(items) + pickle.TUPLE


def op_call(func: bytes, *args: bytes) -> bytes:
    return func + op_tuple(*args) + pickle.REDUCE


def op_list(items: list[bytes]) -> bytes:
    out = [pickle.EMPTY_LIST]
    for i in range(0, len(items), 1000):
        out += [pickle.MARK, *items[i : i + 1000], pickle.APPENDS]
    return b"".join(out)


def op_dtype(spec: str = "u1", order: str = "|", flags: int = 0) -> bytes:
    """``numpy.dtype(spec, False, True)`` and its state, as numpy pickles it."""
    state = op_tuple(
        op_int(3), op_str(order), pickle.NONE, pickle.NONE, pickle.NONE,
        op_int(-1), op_int(-1), op_int(flags),
    )  # fmt: skip
    return op_call(op_global("numpy", "dtype"), op_str(spec), pickle.NEWFALSE, pickle.NEWTRUE) + (
        state + pickle.BUILD
    )


RECONSTRUCT = op_global("numpy.core.multiarray", "_reconstruct")
NDARRAY = op_global("numpy", "ndarray")


def op_placeholder(shape: tuple[int, ...] = (0,), typecode: bytes = b"b") -> bytes:
    """``_reconstruct(ndarray, shape, typecode)``: numpy pickles only shape (0,)."""
    return op_call(RECONSTRUCT, NDARRAY, op_tuple(*map(op_int, shape)), op_bytes(typecode))


def op_array(shape: tuple[int, ...], rawdata: bytes, dtype: bytes | None = None) -> bytes:
    """A numpy array as numpy pickles it: the placeholder, then BUILD with its state."""
    state = op_tuple(
        op_int(1), op_tuple(*map(op_int, shape)), dtype or op_dtype(), pickle.NEWFALSE, rawdata
    )
    return op_placeholder() + state + pickle.BUILD


def op_batch(data_ops: bytes, labels_ops: bytes, extra: bytes = b"") -> bytes:
    """A protocol-3 pickle of ``{b'data': ..., b'labels': ..., **extra}``."""
    body = op_bytes(b"data") + data_ops + op_bytes(b"labels") + labels_ops + extra
    return b"\x80\x03" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP


# ---------------------------------------------------------------------------------------------
# Valid directories (the base every case changes one thing in)


def fake_batch(n: int, seed: int) -> dict[bytes, Any]:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": f"batch {seed}".encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def write_base(root: Path, n: int = SMALL_N) -> Path:
    """A tiny valid CIFAR-10 directory (random images, protocol 2 as the real files)."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate((*data.TRAIN_FILES, data.TEST_FILE), start=1):
        (root / name).write_bytes(pickle.dumps(fake_batch(n, seed), protocol=2))
    meta = {b"num_cases_per_batch": 10000, b"label_names": [c.encode() for c in CLASSES]}
    (root / data.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    return root


def py2_batch(batch: dict[bytes, Any]) -> bytes:
    """A batch as Python 2's cPickle wrote the official files (protocol 2, str as BINSTRING,
    ``numpy.core.multiarray``, dtype('u1', 0, 1)): read with encoding="bytes" as Keras does."""

    def s(value: bytes) -> bytes:
        if len(value) < 256:
            return pickle.SHORT_BINSTRING + bytes([len(value)]) + value
        return pickle.BINSTRING + struct.pack("<i", len(value)) + value

    def memo(i: int) -> bytes:
        return pickle.LONG_BINPUT + struct.pack("<I", 100 + i)

    arr = batch[b"data"]
    dtype = op_call(op_global("numpy", "dtype"), s(b"u1"), op_int(0), op_int(1))
    dtype += op_tuple(op_int(3), s(b"|"), *[pickle.NONE] * 3, op_int(-1), op_int(-1), op_int(0))
    dtype += pickle.BUILD
    placeholder = op_call(RECONSTRUCT, NDARRAY, op_tuple(op_int(0)), s(b"b"))
    shape = op_tuple(*map(op_int, arr.shape))
    state = op_tuple(op_int(1), shape, dtype, pickle.NEWFALSE, s(arr.tobytes()))
    array = placeholder + state + pickle.BUILD
    items = [
        s(b"data") + array,
        s(b"labels") + op_list([op_int(v) for v in batch[b"labels"]]),
        s(b"batch_label") + s(batch[b"batch_label"]),
        # cPickle memoises every string it writes (BINPUT after each): ~3 opcodes per image.
        s(b"filenames") + op_list([s(f) + memo(i) for i, f in enumerate(batch[b"filenames"])]),
    ]
    return b"\x80\x02" + pickle.EMPTY_DICT + pickle.MARK + b"".join(items) + b"u."


def write_py2_cifar(root: Path, n: int = 10_000, test_n: int | None = None) -> Path:
    """A CIFAR-10 directory in the official files' own encoding, ``n`` images per batch."""
    root.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate((*data.TRAIN_FILES, data.TEST_FILE), start=1):
        size = test_n if (name == data.TEST_FILE and test_n is not None) else n
        (root / name).write_bytes(py2_batch(fake_batch(size, seed)))
    meta = {b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}
    (root / data.META_FILE).write_bytes(pickle.dumps(meta, protocol=2))
    return root


def memo_index_batch() -> bytes:
    """A valid one-image batch whose memo index is 2**31 - 1: pickle's C unpickler sizes its
    memo table by the index (16 GiB of pointers); a dict memo costs one entry."""
    data_ops = op_array((1, 3072), op_bytes(bytes(3072))) + pickle.LONG_BINPUT
    data_ops += struct.pack("<I", 2**31 - 1)
    return op_batch(data_ops, op_list([op_int(7)]))


# ---------------------------------------------------------------------------------------------
# The cases

CASES: dict[str, Callable[[Path], Case]] = {}
FORMAT, FILE, NOT_FOUND = "Cifar10FormatError", "Cifar10FileError", "Cifar10NotFoundError"


def case(func: Callable[[Path], Case]) -> Callable[[Path], Case]:
    CASES[func.__name__.removeprefix("case_")] = func
    return func


def _dir_case(
    root: Path,
    name: str,
    file: str,
    content: bytes | None,
    error: str,
    problem: str,
    names: str | None = None,
) -> Case:
    """The base directory under ``root/name`` with ``file`` replaced by ``content``."""
    d = write_base(root / name)
    if content is not None:
        (d / file).write_bytes(content)
    return Case(name, "dir", str(d), error, problem, str(d / file) if names is None else names)


def _batch_case(
    root: Path, name: str, data_ops: bytes, labels_ops: bytes, problem: str, extra: bytes = b""
) -> Case:
    content = op_batch(data_ops, labels_ops, extra)
    return _dir_case(root, name, "data_batch_1", content, FORMAT, problem)


def _zeros_u1(n: int) -> bytes:  # labels as a uint8 array of n zeros, with its data
    return op_array((n,), op_bytes(bytes(n)))


# Class 1. Memory claimed before validation ---------------------------------------------------
# Before the fix, the first three made numpy allocate N x 3,072 bytes of uninitialised memory
# from a file of a few hundred bytes (the 327-byte case), and the loader accepted it.


@case
def case_reconstruct_no_data(root: Path) -> Case:
    n = 300_000  # 921 MB claimed by 300 bytes: below the 1 GiB cap per array
    data_ops = op_placeholder((n, 3072), b"B")
    labels = op_placeholder((n,), b"B")
    return _batch_case(
        root, "reconstruct_no_data", data_ops, labels, r"_reconstruct.*\(300000, 3072\)"
    )


@case
def case_reconstruct_no_data_huge(root: Path) -> Case:
    n = 3_000_000  # 9.2 GB: over every cap
    data_ops = op_placeholder((n, 3072), b"B")
    return _batch_case(root, "reconstruct_no_data_huge", data_ops, _zeros_u1(0), r"_reconstruct")


@case
def case_ndarray_called(root: Path) -> Case:
    shape = op_tuple(op_int(300_000), op_int(3072))
    data_ops = op_call(NDARRAY, shape, op_str("B"))
    return _batch_case(
        root, "ndarray_called", data_ops, _zeros_u1(0), r"REDUCE calls numpy\.ndarray"
    )


@case
def case_ndarray_newobj(root: Path) -> Case:
    shape = op_tuple(op_int(300_000), op_int(3072))
    data_ops = NDARRAY + op_tuple(shape, op_str("B")) + pickle.NEWOBJ
    return _batch_case(
        root, "ndarray_newobj", data_ops, _zeros_u1(0), r"opcode NEWOBJ is not allowed"
    )


@case
def case_state_shape_without_data(root: Path) -> Case:
    data_ops = op_array((300_000, 3072), op_bytes(b""))
    problem = r"shape \(300000, 3072\) needs 921600000 bytes; its data holds 0"
    return _batch_case(root, "state_shape_without_data", data_ops, _zeros_u1(0), problem)


@case
def case_object_array_state(root: Path) -> Case:
    # numpy allocates and zero-fills 8 bytes per item before it looks at the list.
    dtype = op_dtype("O8", "|", 63)
    data_ops = op_array((100_000_000,), pickle.EMPTY_LIST, dtype)
    return _batch_case(
        root, "object_array_state", data_ops, _zeros_u1(0), r"object arrays are not allowed"
    )


@case
def case_array_over_cap(root: Path) -> Case:
    # A shape whose bytes exceed the 1 GiB cap per array, refused before any data is read.
    data_ops = op_array((400_000, 3072), op_bytes(b""))
    return _batch_case(
        root, "array_over_cap", data_ops, _zeros_u1(0), r"exceeds the cap of 1073741824"
    )


@case
def case_binbytes8_length(root: Path) -> Case:
    data_ops = pickle.BINBYTES8 + struct.pack("<Q", 1 << 40)
    return _batch_case(root, "binbytes8_length", data_ops, b"", r"declares 1099511627776 bytes")


@case
def case_bytearray8_length(root: Path) -> Case:
    data_ops = pickle.BYTEARRAY8 + struct.pack("<Q", 1 << 33)
    return _batch_case(root, "bytearray8_length", data_ops, b"", r"BYTEARRAY8 declares 8589934592")


@case
def case_frame_length(root: Path) -> Case:
    content = b"\x80\x04" + pickle.FRAME + struct.pack("<Q", 1 << 40) + b"}."
    return _dir_case(
        root, "frame_length", "data_batch_1", content, FORMAT, r"declares 1099511627776"
    )


@case
def case_shared_buffer(root: Path) -> Case:
    # One 1 MiB buffer, memoised and rebuilt into 1,000 arrays: 1 GiB from a 1 MiB file.
    buf = op_bytes(bytes(1 << 20)) + pickle.BINPUT + b"\x01"
    first = op_array((1 << 20,), buf)
    again = [op_array((1 << 20,), pickle.BINGET + b"\x01") for _ in range(999)]
    extra = op_bytes(b"extra") + op_list([first, *again])
    content = op_batch(op_array((0, 3072), op_bytes(b"")), _zeros_u1(0), extra)
    return _dir_case(
        root,
        "shared_buffer",
        "data_batch_1",
        content,
        FORMAT,
        r"more than the \d+ bytes of the input",
    )


@case
def case_dict_flood(root: Path) -> Case:
    # 5,000,000 empty dicts (~1 GB of objects) from a 5 MB file.
    flood = pickle.MARK + pickle.EMPTY_DICT * 5_000_000 + pickle.LIST
    return _batch_case(root, "dict_flood", flood, b"", r"more than \d+ opcodes")


@case
def case_labels_flood(root: Path) -> Case:
    # Half a million labels for one image.
    labels = op_list([pickle.BININT1 + b"\x01"] * 500_000)
    data_ops = op_array((1, 3072), op_bytes(bytes(3072)))
    return _batch_case(root, "labels_flood", data_ops, labels, r"more than \d+ opcodes")


@case
def case_deep_list(root: Path) -> Case:
    depth = 1000  # within the opcode cap, past the nesting cap
    labels = pickle.EMPTY_LIST * depth + pickle.APPEND * (depth - 1)
    return _batch_case(
        root,
        "deep_list",
        op_array((1, 3072), op_bytes(bytes(3072))),
        labels,
        r"nested deeper than 8",
    )


@case
def case_deep_tuple_key(root: Path) -> Case:
    # Hashing a tuple nested 200,000 deep recursed in C: the old loader died with SIGSEGV.
    key = pickle.NONE + pickle.TUPLE1 * 200_000
    content = b"\x80\x02" + pickle.EMPTY_DICT + key + pickle.NONE + pickle.SETITEM + pickle.STOP
    return _dir_case(
        root, "deep_tuple_key", "data_batch_1", content, FORMAT, r"more than \d+ opcodes"
    )


@case
def case_tuple_key(root: Path) -> Case:
    key = op_tuple(op_int(1), op_int(2))
    content = b"\x80\x02" + pickle.EMPTY_DICT + key + pickle.NONE + pickle.SETITEM + pickle.STOP
    return _dir_case(root, "tuple_key", "data_batch_1", content, FORMAT, r"dict key \(1, 2\)")


@case
def case_odd_setitems(root: Path) -> Case:
    # Found by fuzzing: an extra item inside SETITEMS, which the first version dropped silently.
    body = op_bytes(b"labels") + op_list([op_int(1)]) + op_bytes(b"stray")
    content = b"\x80\x03" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP
    problem = r"SETITEMS with an odd number of items"
    return _dir_case(root, "odd_setitems", "data_batch_1", content, FORMAT, problem)


@case
def case_cycle(root: Path) -> Case:
    labels = pickle.EMPTY_LIST + pickle.BINPUT + b"\x07" + pickle.BINGET + b"\x07" + pickle.APPEND
    data_ops = op_array((1, 3072), op_bytes(bytes(3072)))
    return _batch_case(root, "cycle", data_ops, labels, r"holds itself \(a cycle\)")


def _sparse(path: Path, size: int) -> None:
    with path.open("wb") as f:
        f.truncate(size)  # no blocks on disk


@case
def case_batch_over_cap(root: Path) -> Case:
    c = _dir_case(
        root, "batch_over_cap", "data_batch_2", None, FORMAT, r"over the cap of 1,073,741,824"
    )
    _sparse(Path(c.names), data.MAX_BATCH_BYTES + 1)
    return c


@case
def case_batch_at_cap(root: Path) -> Case:
    # Exactly at the cap: read, and refused at its first byte (a zero is no pickle opcode).
    c = _dir_case(root, "batch_at_cap", "data_batch_2", None, FORMAT, r"invalid opcode")
    _sparse(Path(c.names), data.MAX_BATCH_BYTES)
    return c


@case
def case_meta_over_cap(root: Path) -> Case:
    c = _dir_case(root, "meta_over_cap", "batches.meta", None, FORMAT, r"over the cap of 1,048,576")
    _sparse(Path(c.names), data.MAX_META_BYTES + 1)
    return c


@case
def case_dir_over_cap(root: Path) -> Case:
    d = write_base(root / "dir_over_cap")
    for name in data.TRAIN_FILES:  # each under its own cap, together over the directory's
        _sparse(d / name, 900 * MiB)
    return Case("dir_over_cap", "dir", str(d), FORMAT, r"over the cap of 4,294,967,296", str(d))


# Class 2. Crashes where a clear error belongs --------------------------------------------------


@case
def case_batch_is_directory(root: Path) -> Case:
    c = _dir_case(
        root,
        "batch_is_directory",
        "data_batch_3",
        None,
        FILE,
        r"is a directory; expected a regular file",
    )
    Path(c.names).unlink()
    Path(c.names).mkdir()
    return c


@case
def case_batch_is_fifo(root: Path) -> Case:
    # Opening a FIFO for reading blocks until a writer comes: it must never be opened.
    c = _dir_case(
        root, "batch_is_fifo", "test_batch", None, FILE, r"is a FIFO; expected a regular file"
    )
    Path(c.names).unlink()
    os.mkfifo(c.names)
    return c


@case
def case_meta_is_fifo(root: Path) -> Case:
    c = _dir_case(root, "meta_is_fifo", "batches.meta", None, FILE, r"is a FIFO")
    Path(c.names).unlink()
    os.mkfifo(c.names)
    return c


@case
def case_batch_is_socket(root: Path) -> Case:
    c = _dir_case(root, "batch_is_socket", "data_batch_4", None, FILE, r"is a socket")
    Path(c.names).unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(c.names)
    return c


@case
def case_symlink_outside(root: Path) -> Case:
    problem = r"is a symbolic link to '/etc/passwd'; expected a regular file"
    c = _dir_case(root, "symlink_outside", "data_batch_5", None, FILE, problem)
    Path(c.names).unlink()
    Path(c.names).symlink_to("/etc/passwd")
    return c


@case
def case_symlink_to_valid_batch(root: Path) -> Case:
    # Even a link to a good batch elsewhere: the files of a directory are the directory's own.
    c = _dir_case(root, "symlink_to_valid_batch", "data_batch_1", None, FILE, r"is a symbolic link")
    elsewhere = root / "symlink_to_valid_batch.target"
    Path(c.names).rename(elsewhere)
    Path(c.names).symlink_to(elsewhere)
    return c


@case
def case_symlink_dangling(root: Path) -> Case:
    c = _dir_case(root, "symlink_dangling", "data_batch_2", None, FILE, r"is a symbolic link")
    Path(c.names).unlink()
    Path(c.names).symlink_to(root / "nowhere")
    return c


@case
def case_symlink_to_dev_zero(root: Path) -> Case:
    c = _dir_case(
        root, "symlink_to_dev_zero", "data_batch_2", None, FILE, r"symbolic link to '/dev/zero'"
    )
    Path(c.names).unlink()
    Path(c.names).symlink_to("/dev/zero")
    return c


@case
def case_data_dir_is_file(root: Path) -> Case:
    path = root / "data_dir_is_file"
    path.write_bytes(pickle.dumps(fake_batch(2, 1), protocol=2))
    return Case(path.name, "dir", str(path), FILE, r"is a regular file, not a directory", str(path))


@case
def case_data_dir_is_fifo(root: Path) -> Case:
    path = root / "data_dir_is_fifo"
    os.mkfifo(path)
    return Case(path.name, "dir", str(path), FILE, r"is a FIFO, not a directory", str(path))


@case
def case_data_dir_missing(root: Path) -> Case:
    path = root / "data_dir_missing"
    return Case(path.name, "dir", str(path), NOT_FOUND, r"does not exist", str(path))


@case
def case_batch_missing(root: Path) -> Case:
    c = _dir_case(
        root, "batch_missing", "data_batch_4", None, NOT_FOUND, r"lacks data_batch_4;", ""
    )
    Path(c.path, "data_batch_4").unlink()
    return Case(c.name, c.kind, c.path, c.error, c.problem, c.path)


def _meta(names: list[Any], protocol: int = 2) -> bytes:
    return pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol)


@case
def case_meta_bad_utf8(root: Path) -> Case:
    names = [c.encode() for c in CLASSES]
    names[3] = b"c\xffat"
    return _dir_case(
        root,
        "meta_bad_utf8",
        "batches.meta",
        _meta(names),
        FORMAT,
        r"label_names\[3\] must be UTF-8 text; received b'c\\xffat'",
    )


@case
def case_meta_lone_surrogate(root: Path) -> Case:
    body = op_bytes(b"label_names") + op_list([op_str("\ud800")] + [op_str(c) for c in CLASSES[1:]])
    content = b"\x80\x03" + pickle.EMPTY_DICT + pickle.MARK + body + pickle.SETITEMS + pickle.STOP
    return _dir_case(
        root,
        "meta_lone_surrogate",
        "batches.meta",
        content,
        FORMAT,
        r"label_names\[0\] must be UTF-8 text",
    )


@case
def case_meta_terminal_escape(root: Path) -> Case:
    names = list(CLASSES)
    names[9] = "\x1b]0;pwned\x07truck"
    return _dir_case(
        root,
        "meta_terminal_escape",
        "batches.meta",
        _meta(names),
        FORMAT,
        r"label_names\[9\] must be non-empty printable text",
    )


@case
def case_meta_nine_names(root: Path) -> Case:
    return _dir_case(
        root,
        "meta_nine_names",
        "batches.meta",
        _meta(CLASSES[:9]),
        FORMAT,
        r"9 label_names; expected 10",
    )


@case
def case_meta_names_not_text(root: Path) -> Case:
    names: list[Any] = [c.encode() for c in CLASSES]
    names[0] = 7
    return _dir_case(
        root,
        "meta_names_not_text",
        "batches.meta",
        _meta(names),
        FORMAT,
        r"label_names\[0\] must be UTF-8 text; received 7",
    )


@case
def case_meta_not_a_dict(root: Path) -> Case:
    content = pickle.dumps(CLASSES, protocol=2)
    return _dir_case(
        root,
        "meta_not_a_dict",
        "batches.meta",
        content,
        FORMAT,
        r"expected a pickled dict; received list",
    )


@case
def case_empty_training_set(root: Path) -> Case:
    d = write_base(root / "empty_training_set")
    for name in data.TRAIN_FILES:
        (d / name).write_bytes(pickle.dumps(fake_batch(0, 1), protocol=2))
    return Case(
        d.name,
        "dir",
        str(d),
        FORMAT,
        r"no training images in .*: data_batch_1, .* hold 0 images",
        str(d),
    )


@case
def case_empty_test_set(root: Path) -> Case:
    content = pickle.dumps(fake_batch(0, 1), protocol=2)
    c = _dir_case(root, "empty_test_set", "test_batch", content, FORMAT, r"no test images in", "")
    return Case(c.name, c.kind, c.path, c.error, c.problem, c.path)


@case
def case_zero_length_batch(root: Path) -> Case:
    return _dir_case(
        root,
        "zero_length_batch",
        "data_batch_3",
        b"",
        FORMAT,
        r"truncated or corrupt pickle.*ended early",
    )


@case
def case_random_batch(root: Path) -> Case:
    noise = np.random.default_rng(16).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return _dir_case(
        root, "random_batch", "data_batch_3", noise, FORMAT, r"truncated or corrupt pickle"
    )


@case
def case_truncated_batch(root: Path) -> Case:
    full = pickle.dumps(fake_batch(SMALL_N, 1), protocol=2)
    return _dir_case(
        root,
        "truncated_batch",
        "data_batch_1",
        full[: len(full) // 2],
        FORMAT,
        r"truncated or corrupt pickle",
    )


@case
def case_code_execution(root: Path) -> Case:
    # Plain pickle would run os.system(...) and create the marker file.
    marker = root / "code_execution.ran"
    content = op_call(op_global("os", "system"), op_str(f"touch {marker}")) + pickle.STOP
    return _dir_case(
        root,
        "code_execution",
        "data_batch_1",
        b"\x80\x02" + content,
        FORMAT,
        r"refusing to unpickle posix\.system|refusing to unpickle os\.system",
    )


@case
def case_other_callable(root: Path) -> Case:
    content = (
        b"\x80\x02" + op_call(op_global("builtins", "getattr"), op_str("x"), op_str("y")) + b"."
    )
    return _dir_case(
        root,
        "other_callable",
        "data_batch_1",
        content,
        FORMAT,
        r"refusing to unpickle builtins\.getattr",
    )


# Class 3. Silently wrong results ---------------------------------------------------------------


def _labels_case(root: Path, name: str, labels: Any, problem: str) -> Case:
    batch = fake_batch(SMALL_N, 1)
    batch[b"labels"] = labels
    return _dir_case(root, name, "data_batch_1", pickle.dumps(batch, protocol=2), FORMAT, problem)


LABEL_CASES: dict[str, tuple[Any, str]] = {
    "labels_ignore_index": ([0, -100, 1], r"received -100 at index 1 .*ignore_index"),
    "labels_float": ([0, 1, 2.5], r"must be a list of ints; received float 2\.5 at index 2"),
    "labels_integral_float": ([0.0, 1, 2], r"received float 0\.0 at index 0"),
    "labels_bool": ([0, True, 2], r"received bool True at index 1"),
    "labels_huge_int": ([0, 1, 2**70], r"received an int of 71 bits at index 2"),
    "labels_int64_max": ([2**63 - 1, 0, 0], r"received 9223372036854775807 at index 0"),
    "labels_ten": ([0, 10, 1], r"lie in 0\.\.9; received 10 at index 1"),
    "labels_str": (["1", 1, 1], r"received '1' at index 0"),
    "labels_none": (None, r"received NoneType"),
    "labels_short": ([1, 2], r"2 labels for 3 images"),
    "labels_float_array": (np.array([0.0, 1.0, 2.0]), r"received float64 array of shape \(3,\)"),
    "labels_bool_array": (np.array([True, False, True]), r"received bool array"),
    "labels_array_ignore_index": (np.array([1, 2, -100]), r"received -100 at index 2"),
    "labels_uint64_array_huge": (np.array([2**64 - 1, 0, 0], np.uint64), r"received 18446744073709551615 at index 0"),
}  # fmt: skip


def _make_label_case(name: str) -> Callable[[Path], Case]:
    labels, problem = LABEL_CASES[name]
    return lambda root: _labels_case(root, name, labels, problem)


for _name in LABEL_CASES:
    CASES[_name] = _make_label_case(_name)


def _data_case(root: Path, name: str, array: Any, problem: str) -> Case:
    batch = fake_batch(SMALL_N, 1)
    batch[b"data"] = array
    return _dir_case(root, name, "data_batch_1", pickle.dumps(batch, protocol=2), FORMAT, problem)


DATA_CASES: dict[str, tuple[Any, str]] = {
    "data_int64": (np.zeros((SMALL_N, 3072), np.int64), r"received int64 array of shape \(3, 3072\)"),
    "data_float32": (np.zeros((SMALL_N, 3072), np.float32), r"received float32 array"),
    "data_bool": (np.zeros((SMALL_N, 3072), bool), r"received bool array"),
    "data_uint16_big_endian": (np.zeros((SMALL_N, 3072), ">u2"), r"received uint16 array"),  # swapped
    "data_nhwc": (np.zeros((SMALL_N, 32, 32, 3), np.uint8), r"shape \(3, 32, 32, 3\)"),
    "data_list": ([[0] * 3072] * SMALL_N, r"received list of 3"),
}  # fmt: skip


def _make_data_case(name: str) -> Callable[[Path], Case]:
    array, problem = DATA_CASES[name]
    return lambda root: _data_case(root, name, array, problem)


for _name in DATA_CASES:
    CASES[_name] = _make_data_case(_name)


# Class 4. Archives (the download path) ---------------------------------------------------------


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, content in members:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buf.getvalue()


def _member(
    name: str, content: bytes = b"ok", kind: bytes = tarfile.REGTYPE
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    if kind == tarfile.REGTYPE:
        info.size = len(content)
        return info, content
    info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    return info, None


def _tar_case(root: Path, name: str, raw: bytes, problem: str, **kwargs: int) -> Case:
    path = root / f"{name}.tar.gz"
    path.write_bytes(raw)
    return Case(name, "tar", str(path), FORMAT, problem, str(path), kwargs)


def _gz(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=1, mtime=0)


def _header(name: str, size: int, kind: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.GNU_FORMAT)


@case
def case_tar_many_members(root: Path) -> Case:
    members = [_member(f"cifar-10-batches-py/f{i}") for i in range(data.MAX_ARCHIVE_MEMBERS + 1)]
    return _tar_case(root, "tar_many_members", _gz(_tar_bytes(members)), r"more than 1,000 members")


@case
def case_tar_declared_huge(root: Path) -> Case:
    # A header declaring 100 GiB and nothing behind it: refused before tarfile seeks past it.
    raw = _header("cifar-10-batches-py/data_batch_1", 100 * GiB, tarfile.REGTYPE) + bytes(1024)
    return _tar_case(root, "tar_declared_huge", _gz(raw), r"declare more than 1,073,741,824 bytes")


@case
def case_tar_over_small_cap(root: Path) -> Case:
    members = [_member("cifar-10-batches-py/big", bytes(2 * MiB))]
    raw = _gz(_tar_bytes(members))
    return _tar_case(root, "tar_over_small_cap", raw, r"declare more than 1,048,576", max_bytes=MiB)


def _metadata_bomb(kind: bytes) -> bytes:
    # tarfile reads a pax or GNU long-name header's data whole: 16 MiB of it, compressed to 16 KiB.
    size = 16 * MiB
    raw = _header("././@LongLink" if kind == tarfile.GNUTYPE_LONGNAME else "pax", size, kind)
    raw += bytes(size) + _header("cifar-10-batches-py/x", 0, tarfile.REGTYPE) + bytes(1024)
    return _gz(raw)


@case
def case_tar_pax_bomb(root: Path) -> Case:
    return _tar_case(
        root, "tar_pax_bomb", _metadata_bomb(tarfile.XHDTYPE), r"refusing a single read of 16777216"
    )


@case
def case_tar_longname_bomb(root: Path) -> Case:
    raw = _metadata_bomb(tarfile.GNUTYPE_LONGNAME)
    return _tar_case(root, "tar_longname_bomb", raw, r"refusing a single read of 16777216")


def _valid_tar(root: Path) -> bytes:
    base = write_base(root / ".tar_source" / "cifar-10-batches-py")
    return _gz(
        _tar_bytes(
            [
                (tarfile.TarInfo(f"cifar-10-batches-py/{p.name}"), p.read_bytes())
                for p in sorted(base.iterdir())
            ]
        )
    )


@case
def case_tar_truncated(root: Path) -> Case:
    raw = _valid_tar(root)
    return _tar_case(
        root, "tar_truncated", raw[: len(raw) // 2], r"not a readable tar archive|truncated"
    )


@case
def case_tar_random(root: Path) -> Case:
    noise = np.random.default_rng(16).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    return _tar_case(root, "tar_random", noise, r"not a readable tar archive")


@case
def case_tar_gzip_garbage(root: Path) -> Case:
    noise = np.random.default_rng(17).integers(0, 256, 8192, dtype=np.uint8).tobytes()
    return _tar_case(
        root, "tar_gzip_garbage", b"\x1f\x8b\x08\x00" + noise, r"not a readable tar archive"
    )


TAR_MEMBER_CASES: dict[str, tuple[str, bytes, str]] = {
    "tar_symlink": ("cifar-10-batches-py/data_batch_1", tarfile.SYMTYPE, r"only regular files and directories"),
    "tar_hardlink": ("cifar-10-batches-py/data_batch_1", tarfile.LNKTYPE, r"only regular files and directories"),
    "tar_fifo": ("cifar-10-batches-py/data_batch_1", tarfile.FIFOTYPE, r"only regular files and directories"),
    "tar_device": ("cifar-10-batches-py/data_batch_1", tarfile.CHRTYPE, r"only regular files and directories"),
    "tar_absolute": ("/tmp/torch_cnn_hostile_evil", tarfile.REGTYPE, r"absolute path"),
    "tar_dotdot": ("cifar-10-batches-py/../../evil", tarfile.REGTYPE, r"outside the archive"),
}  # fmt: skip


def _make_tar_member_case(name: str) -> Callable[[Path], Case]:
    member, kind, problem = TAR_MEMBER_CASES[name]
    members = [_member("cifar-10-batches-py/fine"), _member(member, b"evil", kind)]
    return lambda root: _tar_case(root, name, _gz(_tar_bytes(members)), problem)


for _name in TAR_MEMBER_CASES:
    CASES[_name] = _make_tar_member_case(_name)


# ---------------------------------------------------------------------------------------------
# Writing and checking the corpus


def write_corpus(out: Path, names: list[str] | None = None) -> list[Case]:
    """Every case (or those named) under ``out``; their descriptions in ``out/cases.json``."""
    out.mkdir(parents=True, exist_ok=True)
    cases = [CASES[name](out) for name in (names or list(CASES))]
    (out / "cases.json").write_text(json.dumps([c._asdict() for c in cases], indent=1))
    return cases


def _status() -> dict[str, int]:
    """VmSize, VmRSS and VmHWM of this process, in bytes (Linux)."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmSize", "VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class _Timeout(Exception):
    pass


def _on_alarm(signum: int, frame: object) -> None:
    raise _Timeout


def run_case(c: Case, timeout: int = 10) -> dict[str, Any]:
    """Load one case here; what it raised, how long it took and the peak memory it added."""
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status()["VmRSS"]
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(timeout)
    start = time.perf_counter()
    result: dict[str, Any] = {"name": c.name, "error": None, "cifar10_error": False, "message": ""}
    try:
        if c.kind == "dir":
            data.load_cifar10(c.path, download=False)
        else:
            data.extract_tarball(c.path, c.path + ".out", **c.kwargs)
    except _Timeout:
        result["error"] = "timeout"
    except Exception as exc:  # MemoryError and RecursionError too: the point is to see them
        result.update(
            error=type(exc).__name__,
            cifar10_error=isinstance(exc, data.Cifar10Error),
            message=str(exc)[:4000],
        )
    finally:
        signal.alarm(0)
    result["seconds"] = time.perf_counter() - start
    result["peak_bytes"] = _status()["VmHWM"] - before
    return result


def check_corpus(out: Path, headroom: int, timeout: int = 10) -> list[dict[str, Any]]:
    """Run every case in ``out/cases.json`` with the address space capped at the current size
    plus ``headroom`` bytes (torch is already imported); one JSON line per case on stdout."""
    cases = [Case(**c) for c in json.loads((out / "cases.json").read_text())]
    limit = _status()["VmSize"] + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    results = []
    for c in cases:
        result = run_case(c, timeout)
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory for the corpus")
    parser.add_argument("--check", action="store_true", help="load the cases written in OUT")
    parser.add_argument("--only", nargs="*", help="these cases only (when writing)")
    parser.add_argument(
        "--headroom-mib", type=int, default=512, help="address space a case may add"
    )
    parser.add_argument("--timeout", type=int, default=10, help="seconds per case")
    args = parser.parse_args(argv)
    if args.check:
        check_corpus(args.out, args.headroom_mib * MiB, args.timeout)
        return 0
    for c in write_corpus(args.out, args.only):
        print(f"{c.name:32} {c.kind:4} {c.error:22} {c.problem}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
