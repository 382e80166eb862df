"""Write the hostile Keras files torch-cnn must refuse (issue 16, classes 1–3), and some it must read.

    python scripts/make_hostile_corpus.py OUT_DIR            # every case, one directory each
    python scripts/make_hostile_corpus.py OUT_DIR --only NAME ...

Every case starts from a small zoo entry (``parity_tests/zoo/seed_like_cnn``: ``.keras``,
legacy ``.h5``, ``.weights.h5``, sharded ``.weights.json``; ``keras2_seed_like_cnn/weights.h5``;
``nested_sequential_in_functional/model_npz.keras``) and changes one thing:

- memory before validation: HDF5 datasets declaring gigabytes with nothing stored (the
  issue's 205 KB file declaring ~3.6 GB), archive members declaring or inflating to GiBs,
  JSON nested beyond Python's parser, each cap of ``reader_limits.Limits`` just below and
  just above (small caps, so the files stay small);
- links and storage outside the file: soft and external links at every depth of a weight's
  path (an external link to a copy of the file, which would load "valid" weights, and to a
  FIFO, which would hang), external storage, virtual datasets, plugin filters, absolute and
  ``..`` names, link cycles, shard names that leave the directory, symbolic links and FIFOs
  where regular files belong, pickles naming globals or arrays without their bytes;
- dtypes and byte orders: integer, bool, complex, compound, string, float128 and
  bfloat16-tagged weights (refused), big-endian, float16, NaN/Inf (read);
- truncated files of every format.

``tests/test_hostile_files.py`` writes the corpus into a temporary directory and reads every
case through the public API, in a child process with a memory and a time limit for those
that would hang, crash or allocate if a guard failed (``danger``).
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import pickletools
import shutil
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "parity_tests" / "zoo"
SEED = ZOO / "seed_like_cnn"
BASE = {
    "keras": SEED / "model.keras",
    "h5": SEED / "model.h5",
    "weights": SEED / "model.weights.h5",
    "sharded": SEED / "model_sharded.weights.json",
    "keras2": ZOO / "keras2_seed_like_cnn" / "weights.h5",
    "npz": ZOO / "nested_sequential_in_functional" / "model_npz.keras",
}
# A weight dataset of each HDF5 base, the path a link replaces a component of.
WEIGHT_PATH = {
    "h5": "model_weights/conv2d_1/conv2d_1/kernel",
    "weights": "layers/conv2d_1/vars/0",
    "keras2": "conv2d_1/conv2d_1/kernel:0",
    "keras": "layers/conv2d_1/vars/0",  # inside model.weights.h5
}
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


class Case(NamedTuple):
    """One file to read, and what must happen."""

    name: str
    make: Callable[[Path], Path]  # writes the case into an empty directory; the path to read
    expect: str = ""  # a fragment of the refusal; "" when the file must read
    reads: str = ""  # "same": the base file's weights; "nonfinite": NaN/Inf reported; "any"
    limits: dict[str, int] | None = None  # reader Limits overrides
    danger: bool = False  # would hang, crash or allocate GiBs if a guard failed
    base: str = ""  # the BASE the weights are compared with (reads == "same")


CASES: dict[str, Case] = {}


def case(name: str, expect: str = "", **kwargs: Any) -> Callable[[Callable[[Path], Path]], None]:
    def register(make: Callable[[Path], Path]) -> None:
        if name in CASES:
            raise ValueError(f"duplicate case {name!r}")
        CASES[name] = Case(name, make, expect, **kwargs)

    return register


def make_case(name: str, out: Path) -> Path:
    """Write case ``name`` into ``out/name/`` (created empty); the path to read."""
    directory = out / name
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return CASES[name].make(directory)


# ------------------------------------------------------------------- helpers


def copy(key: str, directory: Path, name: str | None = None) -> Path:
    target = directory / (name or BASE[key].name)
    shutil.copyfile(BASE[key], target)
    return target


def edit_h5(path: Path, edit: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def members(key: str = "keras") -> dict[str, bytes]:
    with zipfile.ZipFile(BASE[key]) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def write_zip(path: Path, items: dict[str, bytes], deflate: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in items.items():
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            zf.writestr(name, data, compress_type=method)
    return path


def keras_editing_h5(directory: Path, edit: Callable[[h5py.File], None]) -> Path:
    """The base ``.keras`` with its ``model.weights.h5`` edited."""
    items = members()
    buffer = io.BytesIO(items["model.weights.h5"])
    with h5py.File(buffer, "a") as f:
        edit(f)
    items["model.weights.h5"] = buffer.getvalue()
    return write_zip(directory / "model.keras", items)


class RawMember(NamedTuple):
    """A zip member written byte by byte: whatever sizes, flags and method it claims."""

    name: str
    payload: bytes
    method: int = 0
    flags: int = 0
    crc: int | None = None  # None: the CRC of payload (right for stored members)
    size: int | None = None  # None: len(payload)


def raw_zip(path: Path, items: list[RawMember], entries: int | None = None) -> Path:
    """A zip archive as its bytes (``entries`` may lie in the end record)."""
    out, central = bytearray(), bytearray()
    for m in items:
        name = m.name.encode()
        crc = zlib.crc32(m.payload) if m.crc is None else m.crc
        size = len(m.payload) if m.size is None else m.size
        fields = (m.flags, m.method, 0, 0x21, crc, len(m.payload), size, len(name))
        central += struct.pack("<IHH", 0x02014B50, 20, 20) + struct.pack("<HHHHIIIH", *fields)
        central += struct.pack("<HHHHII", 0, 0, 0, 0, 0, len(out)) + name
        out += struct.pack("<IH", 0x04034B50, 20) + struct.pack("<HHHHIIIH", *fields)
        out += struct.pack("<H", 0) + name + m.payload
    count = len(items) if entries is None else entries
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))
    return path


def zeros_deflated(mib: int) -> bytes:
    """A raw deflate stream of ``mib`` MiB of zeros, ~1 KiB per MiB, made without inflating."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def replace_dataset(f: h5py.File, path: str, **create: Any) -> None:
    del f[path]
    f.create_dataset(path, **create)


def hide(f: h5py.File, path: str) -> str:
    """Move ``path`` out of the way (to ``/zz_hidden/...``); its new absolute name."""
    hidden = "/zz_hidden/" + path.replace("/", "_")
    f.require_group("/zz_hidden")
    f.move(path, hidden)
    return hidden


# -------------------------------------------------- class 1: memory before validation


def _big_chunked(f: h5py.File, path: str) -> None:
    """~3.6 GB declared (30000 × 30000 float32), chunked and compressed, nothing stored."""
    replace_dataset(f, path, shape=(30000, 30000), dtype="f4", chunks=(1000, 1000),
                    compression="gzip")  # fmt: skip


@case(
    "h5-declares-3.6GB-in-205KB", "declares 3.4 GiB (30000, 30000) but stores 0 bytes", danger=True
)
def _(d: Path) -> Path:
    def edit(f: h5py.File) -> None:
        _big_chunked(f, WEIGHT_PATH["h5"])
        f["padding"] = np.random.default_rng(0).integers(0, 255, 170 * KIB, dtype=np.uint8)

    return edit_h5(copy("h5", d), edit)


@case("weights-declares-3.6GB", "but stores 0 bytes", danger=True)
def _(d: Path) -> Path:
    return edit_h5(copy("weights", d), lambda f: _big_chunked(f, WEIGHT_PATH["weights"]))


@case("keras-member-declares-3.6GB", "but stores 0 bytes", danger=True)
def _(d: Path) -> Path:
    return keras_editing_h5(d, lambda f: _big_chunked(f, WEIGHT_PATH["keras"]))


def _partly_stored(total_cols: int, chunk_cols: int, written: int) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        path = WEIGHT_PATH["weights"]
        replace_dataset(f, path, shape=(256, total_cols), dtype="f4", chunks=(256, chunk_cols))
        f[path][:, : chunk_cols * written] = 1.0

    return edit


@case("weights-stores-1/50-of-1MB", reads="any")
def _(d: Path) -> Path:
    return edit_h5(copy("weights", d), _partly_stored(1000, 10, 2))


@case("weights-stores-1/200-of-1MB", "but stores 5.0 KiB; refused")
def _(d: Path) -> Path:
    return edit_h5(copy("weights", d), _partly_stored(1000, 5, 1))


for _key in ("h5", "weights", "keras"):
    case(f"{_key}-array-below-cap", reads="same", base=_key, limits={"array_bytes": 16 * KIB})(
        lambda d, k=_key: copy(k, d)
    )
    case(f"{_key}-array-above-cap", "at most 8.0 KiB per array", limits={"array_bytes": 8 * KIB})(
        lambda d, k=_key: copy(k, d)
    )
    case(f"{_key}-total-below-cap", reads="same", base=_key, limits={"total_bytes": 16 * KIB})(
        lambda d, k=_key: copy(k, d)
    )
    case(f"{_key}-total-above-cap", "at most 10.0 KiB per file", limits={"total_bytes": 10 * KIB})(
        lambda d, k=_key: copy(k, d)
    )
case("keras-member-below-cap", reads="same", base="keras", limits={"member_bytes": 64 * KIB})(
    lambda d: copy("keras", d)
)
case("keras-member-above-cap", "at most 16.0 KiB is read", limits={"member_bytes": 16 * KIB})(
    lambda d: copy("keras", d)
)
case("keras-config-above-cap", "at most 1.0 KiB is read", limits={"config_bytes": KIB})(
    lambda d: copy("keras", d)
)
case("h5-model-config-above-cap", "at most 1.0 KiB is read", limits={"config_bytes": KIB})(
    lambda d: copy("h5", d)
)
case("keras-layers-above-cap", "at most 3 are read", limits={"max_layers": 3})(
    lambda d: copy("h5", d)
)
case("weights-objects-above-cap", "more than 12 objects", limits={"max_objects": 12})(
    lambda d: copy("weights", d)
)


@case("keras-member-declares-2GiB", "refused as a decompression bomb", danger=True)
def _(d: Path) -> Path:
    items = [RawMember(n, data) for n, data in members().items() if n != "model.weights.h5"]
    bomb = RawMember("model.weights.h5", zeros_deflated(2048), method=8, crc=0, size=2 * GIB)
    return raw_zip(d / "model.keras", [*items, bomb])


@case("keras-member-inflates-1GiB-past-its-size", "Bad CRC-32", danger=True)
def _(d: Path) -> Path:
    items = [RawMember(n, data) for n, data in members().items() if n != "model.weights.h5"]
    bomb = RawMember("model.weights.h5", zeros_deflated(1024), method=8, crc=0, size=512 * KIB)
    return raw_zip(d / "model.keras", [*items, bomb])


@case("keras-config-declares-128MiB", "declares 128.0 MiB; at most 64.0 MiB is read")
def _(d: Path) -> Path:
    items = [RawMember(n, data) for n, data in members().items() if n != "config.json"]
    bomb = RawMember("config.json", zeros_deflated(128), method=8, crc=0, size=128 * MIB)
    return raw_zip(d / "model.keras", [bomb, *items])


def _padded_config(d: Path, spaces: int) -> Path:
    items = members()
    items["config.json"] += b" " * spaces  # still valid JSON; deflates ~1000 to 1
    return write_zip(d / "model.keras", items, deflate=("config.json",))


case("keras-config-inflates-2MiB-1000x", "refused as a decompression bomb")(
    lambda d: _padded_config(d, 2 * MIB)
)
case("keras-config-inflates-900KiB-1000x", reads="same", base="keras")(
    lambda d: _padded_config(d, 900 * KIB)
)


@case("keras-encrypted-member", "is encrypted")
def _(d: Path) -> Path:
    items = [
        RawMember(n, data, flags=1 if n == "config.json" else 0) for n, data in members().items()
    ]
    return raw_zip(d / "model.keras", items)


@case("keras-bzip2-member", "uses compression method 12")
def _(d: Path) -> Path:
    import bz2

    items = members()
    raw = [RawMember(n, data) for n, data in items.items() if n != "config.json"]
    config = items["config.json"]
    packed = RawMember("config.json", bz2.compress(config), method=12, crc=zlib.crc32(config),
                       size=len(config))  # fmt: skip
    return raw_zip(d / "model.keras", [packed, *raw])


@case("keras-unknown-method-99", "uses compression method 99")
def _(d: Path) -> Path:
    items = [
        RawMember(n, data, method=99 if n == "config.json" else 0) for n, data in members().items()
    ]
    return raw_zip(d / "model.keras", items)


@case("keras-end-record-claims-5000-members", "declares 5000 members", limits={"max_objects": 1000})
def _(d: Path) -> Path:
    return raw_zip(d / "model.keras", [RawMember(n, b) for n, b in members().items()], entries=5000)


def _json_member(d: Path, member: str, text: str) -> Path:
    items = members()
    items[member] = text.encode()
    return write_zip(d / "model.keras", items)


case("keras-config-nested-200000-deep", "JSON nested too deeply to parse")(
    lambda d: _json_member(d, "config.json", "[" * 200_000 + "]" * 200_000)
)
case("keras-config-nested-101-deep", "JSON nested more than 100 levels deep")(
    lambda d: _json_member(d, "config.json", "[" * 101 + "]" * 101)
)
case("keras-metadata-nested-100-deep", reads="same", base="keras")(
    lambda d: _json_member(d, "metadata.json", "[" * 100 + "]" * 100)
)


# ----------------------------------------------- class 2: links and outside storage


def _link_case(key: str, depth: int, kind: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        parts = WEIGHT_PATH[key].split("/")
        path = "/".join(parts[:depth])
        other = d / "other.h5"  # the same weights: following the link would "work"
        if key == "keras":
            with zipfile.ZipFile(BASE["keras"]) as zf:
                other.write_bytes(zf.read("model.weights.h5"))
        else:
            shutil.copyfile(BASE[key], other)
        if kind == "fifo":
            other = d / "fifo"
            os.mkfifo(other)

        def edit(f: h5py.File) -> None:
            hidden = hide(f, path)
            if kind == "soft":
                f[path] = h5py.SoftLink(hidden)
            else:
                f[path] = h5py.ExternalLink(str(other), "/" + path)

        if key == "keras":
            return keras_editing_h5(d, edit)
        return edit_h5(copy(key, d), edit)

    return make


for _key, _path in WEIGHT_PATH.items():
    for _depth in range(1, len(_path.split("/")) + 1):
        for _kind, _says in (("soft", "a soft link"), ("external", "an external link")):
            case(f"{_key}-{_kind}-link-at-depth-{_depth}", f"is {_says}")(
                _link_case(_key, _depth, _kind)
            )
case("h5-external-link-to-fifo-in-weight-path", "is an external link", danger=True)(
    _link_case("h5", 3, "fifo")
)
case("weights-external-link-to-fifo", "is an external link", danger=True)(
    _link_case("weights", 4, "fifo")
)


def _weight_names(layer: str, names: list[str]) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        f[f"model_weights/{layer}"].attrs["weight_names"] = np.array(names, dtype=object)

    return edit


case("h5-absolute-weight-name", "is absolute")(
    lambda d: edit_h5(
        copy("h5", d),
        _weight_names("conv2d_1", ["/model_weights/conv2d/conv2d/kernel", "conv2d_1/bias"]),
    )
)
case("h5-dotdot-weight-name", "path component '..'")(
    lambda d: edit_h5(
        copy("h5", d), _weight_names("conv2d_1", ["../conv2d/conv2d/kernel", "conv2d_1/bias"])
    )
)


@case("h5-external-storage", "keeps its data in external files")
def _(d: Path) -> Path:
    raw = d / "kernel.raw"
    raw.write_bytes(np.ones((3, 3, 2, 4), "f4").tobytes())
    return edit_h5(copy("h5", d), lambda f: replace_dataset(
        f, WEIGHT_PATH["h5"], shape=(3, 3, 2, 4), dtype="f4", external=[(str(raw), 0, 288)]
    ))  # fmt: skip


@case("weights-virtual-dataset", "is a virtual dataset")
def _(d: Path) -> Path:
    other = copy("weights", d, "other.h5")
    layout = h5py.VirtualLayout(shape=(3, 3, 2, 4), dtype="f4")
    layout[:] = h5py.VirtualSource(str(other), WEIGHT_PATH["weights"], shape=(3, 3, 2, 4))

    def edit(f: h5py.File) -> None:
        del f[WEIGHT_PATH["weights"]]
        f.create_virtual_dataset(WEIGHT_PATH["weights"], layout)

    return edit_h5(copy("weights", d), edit)


@case("weights-plugin-filter", "needs HDF5 filter 32004")
def _(d: Path) -> Path:
    def edit(f: h5py.File) -> None:
        path = WEIGHT_PATH["weights"]
        data = f[path][()]
        del f[path]
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(data.shape)
        dcpl.set_filter(32004, h5py.h5z.FLAG_OPTIONAL, ())  # LZ4's id: HDF5 would seek a plugin
        space = h5py.h5s.create_simple(data.shape)
        h5py.h5d.create(f.id, path.encode(), h5py.h5t.IEEE_F32LE, space, dcpl=dcpl)
        f[path][...] = data

    return edit_h5(copy("weights", d), edit)


@case("weights-hard-link-cycle", "groups nested over 64 deep")
def _(d: Path) -> Path:
    return edit_h5(copy("weights", d), lambda f: f.__setitem__("layers/conv2d/loop", f["layers"]))


@case("weights-groups-70-deep", "groups nested over 64 deep")
def _(d: Path) -> Path:
    return edit_h5(copy("weights", d), lambda f: f.create_group("layers/x" + "/x" * 69))


@case("fifo-as-the-file", "not a regular file", danger=True)
def _(d: Path) -> Path:
    os.mkfifo(d / "model.keras")
    return d / "model.keras"


def _model_dir(d: Path, weights: Callable[[Path], None]) -> Path:
    target = d / "model_dir"
    shutil.copytree(SEED / "model_dir", target)
    weights(target / "model.weights.h5")
    return target


def _symlink_over(path: Path) -> None:
    real = path.with_name("real.h5")
    path.rename(real)
    path.symlink_to(real)


def _fifo_over(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


case("keras-dir-symlinked-member", "is a symbolic link")(lambda d: _model_dir(d, _symlink_over))
case("keras-dir-fifo-member", "not a regular file", danger=True)(
    lambda d: _model_dir(d, _fifo_over)
)
case("dir-without-config", "a directory without config.json")(lambda d: d)


def _sharded(d: Path, rename: dict[str, str], setup: Callable[[Path], None] | None = None) -> Path:
    """The sharded base with shard names replaced in its index (the shards copied beside it)."""
    for shard in sorted(SEED.glob("model_sharded_*.weights.h5")):
        shutil.copyfile(shard, d / shard.name)
    text = BASE["sharded"].read_text()
    for old, new in rename.items():
        text = text.replace(f'"{old}"', json_string(new))
    index = d / BASE["sharded"].name
    index.write_text(text)
    if setup is not None:
        setup(d)
    return index


def json_string(value: str) -> str:
    import json

    return json.dumps(value)


_SHARD0 = "model_sharded_00000.weights.h5"
for _label, _bad in (("dotdot", "../model_sharded_00000.weights.h5"), ("absolute", "/etc/passwd"),
                     ("subdir", "a/model_sharded_00000.weights.h5"), ("backslash", "a\\b.h5"),
                     ("empty", ""), ("dot", "."), ("nul", "a\0b")):  # fmt: skip
    case(f"shard-name-{_label}", "expected a file name in the index's directory")(
        lambda d, bad=_bad: _sharded(d, {_SHARD0: bad})
    )
case("shard-symlink", "is a symbolic link")(
    lambda d: _sharded(d, {}, lambda d: _symlink_over(d / _SHARD0))
)
case("shard-fifo", "not a regular file", danger=True)(
    lambda d: _sharded(d, {}, lambda d: _fifo_over(d / _SHARD0))
)
case("shard-directory", "not a regular file")(
    lambda d: _sharded(d, {}, lambda d: ((d / _SHARD0).unlink(), (d / _SHARD0).mkdir()))
)
case("shard-missing", "cannot be read")(lambda d: _sharded(d, {}, lambda d: (d / _SHARD0).unlink()))
case("shard-group-not-listed", "the index lists")(
    lambda d: _sharded(d, {_SHARD0: "model_sharded_00001.weights.h5"})
)
case("sharded-reads", reads="same", base="sharded")(lambda d: _sharded(d, {}))


# -------------------------------------------------------------------- npz pickles


class _Reduce:
    """Pickles as ``func(*args)`` (then ``BUILD`` with ``state``): what a hostile file holds."""

    def __init__(self, func: Any, args: tuple[Any, ...], state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class _PersistentPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        return "storage" if isinstance(obj, bytes) and obj == b"pid" else None


def _npz_dense(edit: Callable[[bytes], bytes]) -> Callable[[Path], Path]:
    """The npz base with its dense layer's member (``.npy`` bytes) edited."""

    def make(d: Path) -> Path:
        items = members("npz")
        with zipfile.ZipFile(io.BytesIO(items["model.weights.npz"])) as zf:
            npz = {n: zf.read(n) for n in zf.namelist()}
        npz["layers/dense.npy"] = edit(npz["layers/dense.npy"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for name, data in npz.items():
                zf.writestr(name, data)
        items["model.weights.npz"] = buffer.getvalue()
        return write_zip(d / "model.keras", items)

    return make


def _npz_case(value: Any, pickler: type[pickle.Pickler] = pickle.Pickler) -> Callable[[Path], Path]:
    def npy(_: bytes) -> bytes:
        holder = np.empty((), dtype=object)
        holder[()] = {"0": value}
        out = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            out, {"descr": "|O", "fortran_order": False, "shape": ()}
        )
        pickler(out, protocol=4).dump(holder)
        return out.getvalue()

    return _npz_dense(npy)


def _memo_index_bomb(npy: bytes) -> bytes:
    """The same member, its result also memoised at index 2**31 - 1 just before STOP: the C
    unpickler sizes its memo table by the index (16 GiB of pointers). Frames, optional at
    protocol 4, are dropped so that the pickle stays valid."""
    fh = io.BytesIO(npy)
    np.lib.format.read_magic(fh)
    np.lib.format.read_array_header_1_0(fh)  # the version Keras's np.save writes
    start = fh.tell()
    ops = [(op.name, pos) for op, _, pos in pickletools.genops(npy[start:])]
    out = bytearray(npy[:start])
    for (name, pos), (_, end) in zip(ops, [*ops[1:], ("", len(npy) - start)], strict=True):
        if name == "STOP":
            out += pickle.LONG_BINPUT + struct.pack("<I", 2**31 - 1)
        if name != "FRAME":
            out += npy[start + pos : start + end]
    return bytes(out)


_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct, by reference
case("npz-names-os-system", "only NumPy arrays and Keras variables are read")(
    _npz_case(_Reduce(os.system, ("echo pwned",)))
)
case("npz-array-without-its-bytes", "with their bytes in the file")(
    _npz_case(_Reduce(_RECONSTRUCT, (np.ndarray, (300000, 3072), b"B")))
)
case("npz-array-shorter-than-its-shape", "its data holds 3")(
    _npz_case(
        _Reduce(
            _RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, (1000, 1000), np.dtype("f4"), False, b"abc")
        )
    )
)
case("npz-array-above-cap", "per array")(
    _npz_case(
        _Reduce(
            _RECONSTRUCT,
            (np.ndarray, (0,), b"b"),
            (1, (300000, 3072), np.dtype("f4"), False, b"abc"),
        )
    )
)
case("npz-persistent-id", "persistent ids are not read")(_npz_case(b"pid", _PersistentPickler))
case("npz-reads", reads="same", base="npz")(lambda d: copy("npz", d))
case("npz-memo-index-2gi", reads="same", base="npz", danger=True)(_npz_dense(_memo_index_bomb))


# -------------------------------------------------------- dtypes and byte orders


def _retyped(dtype: Any, tag: str | None = None, value: Any = None) -> Callable[[Path], Path]:
    def edit(f: h5py.File) -> None:
        path = WEIGHT_PATH["weights"]
        data = f[path][()] if value is None else value
        del f[path]
        f.create_dataset(path, data=np.asarray(data).astype(dtype) if dtype is not None else data)
        if tag:
            f[path].attrs["dtype"] = tag

    return lambda d: edit_h5(copy("weights", d), edit)


case("weights-int32-kernel", "has dtype int32")(_retyped("i4"))
case("weights-bool-kernel", "has dtype bool")(_retyped("?"))
case("weights-complex-kernel", "has dtype complex64")(_retyped("c8"))
case("weights-float128-kernel", "has dtype float128")(_retyped(np.longdouble))
case("weights-bfloat16-tagged", "has dtype bfloat16")(_retyped("u2", tag="bfloat16"))
case("weights-compound-kernel", "has dtype compound")(_retyped([("a", "f4"), ("b", "f4")]))
case("weights-string-kernel", "has dtype object")(
    _retyped(None, value=np.array(["a", "b"], dtype=h5py.string_dtype()))
)
case("weights-big-endian-float32", reads="same", base="weights")(_retyped(">f4"))
case("weights-float16-kernel", reads="any")(_retyped("f2"))
case("weights-int-scalar-counter", reads="any")(_retyped(None, value=np.int64(7)))
case("weights-nan-and-inf", reads="nonfinite")(
    _retyped(None, value=np.array([[np.nan, np.inf], [-np.inf, 1.0]], "f4"))
)


# ------------------------------------------------------------------ truncated files


def _truncated(key: str, fraction: float) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        if key == "sharded":
            index = _sharded(d, {})
            shard = d / _SHARD0
            shard.write_bytes(shard.read_bytes()[: int(shard.stat().st_size * fraction)])
            return index
        path = copy(key, d)
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])
        return path

    return make


for _key in ("keras", "h5", "weights", "sharded", "keras2", "npz"):
    for _fraction in (0.1, 0.5, 0.9):
        case(f"{_key}-truncated-to-{int(_fraction * 100)}pct")(_truncated(_key, _fraction))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write the cases into")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="these cases only")
    args = parser.parse_args()
    names = args.only or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {list(CASES)}")
    for name in names:
        path = make_case(name, args.out)
        c = CASES[name]
        print(f"{name}: {path} ({'reads' if c.reads else 'refused: ' + c.expect})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
