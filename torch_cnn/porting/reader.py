"""Every Keras file, read without Keras, as plain data (``read``); also the child-process reader.

Only the standard library, NumPy and h5py run here (with ``reader_limits``, ``reader_h5``,
``reader_zip``, the pure config helpers of ``keras_config`` and ``torch_cnn._safe_pickle``):
never torch, so ``torch_cnn.porting.isolate`` runs this file by path in a child process
that starts in a fraction of a second. The format is told by content, never by name:

============================  ==========================================================
``keras``, ``keras-dir``      a ``.keras`` zip, or the directory ``save_model(...,
                              zipped=False)`` writes: ``config.json``, ``metadata.json``,
                              ``model.weights.h5`` (or ``model.weights.npz``)
``legacy-h5``                 ``model.save("m.h5")`` (Keras 3 and Keras 2): root attribute
                              ``model_config``, group ``model_weights``
``weights-h5``                ``save_weights("m.weights.h5")``: ``layers/<class path>/vars``
``sharded-weights-h5``        a ``*.weights.json`` index (Keras ≥ 3.10) and its shards
``keras2-weights-h5``         Keras 2 ``save_weights("w.h5")``: root ``layer_names``
============================  ==========================================================

Weights come back as a tree: layer name → arrays in Keras's variable order, or the tree of a
nested model (``keras/src/saving/saving_lib.py``: ``_save_container_state`` addresses a
layer by its class path; ``keras/src/legacy/saving/legacy_h5_format.py``: a nested model's
variables in one group, listed by ``weight_names``).
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and not __package__:  # run by path: import the reader, not torch
    import os.path
    import types

    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    for _name, _dir in (("torch_cnn", os.path.dirname(_here)), ("torch_cnn.porting", _here)):
        _package = types.ModuleType(_name)
        _package.__path__ = [_dir]
        sys.modules.setdefault(_name, _package)

import argparse
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from torch_cnn.porting.keras_config import is_model_entry
from torch_cnn.porting.reader_h5 import open_h5
from torch_cnn.porting.reader_legacy import read_keras2_weights, read_legacy
from torch_cnn.porting.reader_limits import (
    DEFAULT_LIMITS,
    Budget,
    KerasFileError,
    Limits,
    parse_json,
)
from torch_cnn.porting.reader_store import (
    STORE_KEYS,
    Raw,
    Tree,
    class_key,
    in_order,
    read_store,
    store_parts,
    tree_from_store,
)
from torch_cnn.porting.reader_zip import (
    ZIP_MAGIC,
    Archive,
    read_npz,
    read_regular,
    regular_file,
)
from torch_cnn.porting.records import PortingError

__all__ = ["DEFAULT_LIMITS", "KerasFileContents", "KerasFileError", "Limits", "read"]

FORMATS = ("keras", "keras-dir", "legacy-h5", "weights-h5", "sharded-weights-h5",
           "keras2-weights-h5")  # fmt: skip
CONFIG, METADATA = "config.json", "metadata.json"  # saving_lib's member names
WEIGHTS_H5, WEIGHTS_NPZ = "model.weights.h5", "model.weights.npz"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # at 0, or after a user block of 512, 1024, 2048, ... bytes


@dataclass
class KerasFileContents:
    """What a Keras file holds, as plain data (see the module docstring for ``format``)."""

    path: str
    format: str
    config: dict[str, Any] | None = None  # the model entry {"class_name": ..., "config": ...}
    compile_config: dict[str, Any] | None = None  # or a legacy file's training_config
    keras_version: str | None = None
    weights: Tree | None = None  # from the file's config, or the one given for weights only
    store: dict[str, list[np.ndarray]] | None = None  # weights only: "sequential/conv2d" → arrays
    store_names: dict[str, str] = field(default_factory=dict)  # class path → Keras layer name
    keras2_layers: list[tuple[str, list[np.ndarray]]] | None = None  # Keras 2 save_weights
    optimizer: dict[str, list[np.ndarray]] | None = None  # {"variables": optimizer/vars/0..n}
    nonfinite: list[str] = field(default_factory=list)  # where NaN/Inf weights are


def read(
    path: str | os.PathLike[str],
    *,
    config: Mapping[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> KerasFileContents:
    """Read a Keras file of any format (by content, not name) in this process.

    ``config`` (a model entry as ``config.json`` holds it) places the layers of a
    weights-only file. Anything damaged, hostile, over ``limits`` or not Keras raises
    ``KerasFileError`` naming the file, the place and the problem. For example::

        contents = read("model.keras")
        contents.weights["conv2d"]  # [kernel (kh, kw, in, out), bias]
    """
    where = os.fspath(path)
    budget = Budget(limits, where)
    try:
        contents = _read(where, dict(config) if config is not None else None, budget)
    except KerasFileError:
        raise
    except PortingError as exc:  # keras_config's messages on malformed configs
        raise KerasFileError(f"{where}: {exc}") from None
    except MemoryError:
        raise KerasFileError(f"{where}: ran out of memory reading it; refused") from None
    except Exception as exc:  # zipfile, zlib, h5py, numpy, pickle: all a damaged file
        raise KerasFileError(
            f"{where}: could not be read as a Keras file ({type(exc).__name__}: {exc})"
        ) from None
    contents.nonfinite = budget.nonfinite
    return contents


def _read(where: str, config: dict[str, Any] | None, budget: Budget) -> KerasFileContents:
    kind = _sniff(where, budget)
    if kind in ("keras", "keras-dir"):
        return _read_archive(where, kind, budget)
    if kind == "json":
        return _read_sharded(where, config, budget)
    with open_h5(where, budget) as h5:
        f = h5.file
        if "model_config" in f.attrs:
            legacy = read_legacy(h5, budget)
            return KerasFileContents(
                where, "legacy-h5", config=legacy.config, compile_config=legacy.compile_config,
                keras_version=legacy.keras_version, weights=legacy.weights,
            )  # fmt: skip
        if any(h5.has(f, key) for key in (*STORE_KEYS, "vars")):
            raw, names = read_store(h5)
            return _with_weights(KerasFileContents(where, "weights-h5"), raw, names, config, budget)
        if "layer_names" in f.attrs or h5.has(f, "model_weights"):
            legacy = read_keras2_weights(h5, config, budget)
            layers = [(name, arrays) for name, _, arrays in legacy.layers]
            return KerasFileContents(
                where, "keras2-weights-h5", keras_version=legacy.keras_version,
                weights=legacy.weights, keras2_layers=layers,
            )  # fmt: skip
        raise budget.fail(
            "",
            "an HDF5 file but not a Keras one: expected a 'layers' group (Keras 3 .weights.h5), "
            f"'model_config' (legacy .h5) or 'layer_names' (Keras 2 weights); found top-level "
            f"keys {sorted(h5.keys(f))[:20]}",
        )


def _sniff(where: str, budget: Budget) -> str:
    """The format family from the first bytes (or a directory holding ``config.json``)."""
    try:
        st = os.stat(where)
    except OSError as exc:
        raise budget.fail("", f"no such file ({exc.strerror}); expected a Keras file") from None
    if stat.S_ISDIR(st.st_mode):
        if os.path.isfile(os.path.join(where, CONFIG)):
            return "keras-dir"
        raise budget.fail("", f"a directory without {CONFIG}; not a Keras model directory")
    if not stat.S_ISREG(st.st_mode):
        raise budget.fail("", "not a regular file (a FIFO, device or socket); refused")
    fd = os.open(where, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO swapped in: no wait
    with os.fdopen(fd, "rb") as fh:
        head = fh.read(8)
        if head[:4] in ZIP_MAGIC:
            return "keras"
        for offset in (0, *(512 << i for i in range(8))):
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                return "hdf5"
        fh.seek(0)
        if fh.read(64).lstrip()[:1] == b"{":
            return "json"
    raise budget.fail(
        "",
        "neither a Keras zip archive (.keras) nor a readable HDF5 file (.weights.h5/.h5) nor "
        f"a sharded weights index (.weights.json); it begins {head!r}",
    )


# -------------------------------------------------------------- .keras archives


def _read_archive(where: str, kind: str, budget: Budget) -> KerasFileContents:
    """``saving_lib._load_model_from_fileobj`` / ``_load_model_from_dir``."""
    limits = budget.limits
    with Archive(where, budget) as archive:
        members = archive.members
        if CONFIG not in members:
            raise budget.fail("", f"the archive has no {CONFIG}; members: {members[:20]}")
        config = parse_json(archive.read(CONFIG, limits.config_bytes), budget, CONFIG)
        metadata = None
        if METADATA in members:
            metadata = parse_json(archive.read(METADATA, limits.config_bytes), budget, METADATA)
        if WEIGHTS_H5 in members:
            source = archive.local_path(WEIGHTS_H5) or archive.read(WEIGHTS_H5, limits.member_bytes)
            with open_h5(source, budget, WEIGHTS_H5) as h5:
                raw, names = read_store(h5)
        elif WEIGHTS_NPZ in members:
            raw, names = (
                read_npz(archive.read(WEIGHTS_NPZ, limits.member_bytes), budget, WEIGHTS_NPZ),
                {},
            )
        else:
            raise budget.fail(
                "", f"the archive has no {WEIGHTS_H5} or {WEIGHTS_NPZ}; members: {members[:20]}"
            )
    if not isinstance(config, dict):
        raise budget.fail(CONFIG, f"holds a {type(config).__name__}; expected a model entry")
    version = metadata.get("keras_version") if isinstance(metadata, dict) else None
    compile_config = config.get("compile_config")
    contents = KerasFileContents(
        where,
        kind,
        config=config,
        compile_config=compile_config if isinstance(compile_config, dict) else None,
        keras_version=str(version) if version is not None else None,
    )
    return _with_weights(contents, raw, names, config, budget)


def _with_weights(
    contents: KerasFileContents,
    raw: Raw,
    names: dict[str, str],
    config: dict[str, Any] | None,
    budget: Budget,
) -> KerasFileContents:
    """The tree when a config places the layers (else the raw store), and the optimizer."""
    if "optimizer" in raw:
        contents.optimizer = {"variables": raw.pop("optimizer")}
    if config is not None and is_model_entry(config):
        contents.weights = tree_from_store(raw, names, config, budget)
    else:
        contents.store = {class_key(p): arrays for p, arrays in raw.items() if p}
    contents.store_names = {class_key(p): n for p, n in names.items() if p and p != "optimizer"}
    return contents


# ------------------------------------------------------------ sharded weights


def _read_sharded(where: str, config: dict[str, Any] | None, budget: Budget) -> KerasFileContents:
    """``saving_lib.ShardedH5IOStore``: ``weight_map`` names each vars group's shard files.

    A shard holds a group's variables exactly when the index lists it for that group (one
    group's variables may span shards), so anything else is refused.
    """
    listed = _shard_index(where, budget)
    directory = os.path.dirname(os.path.abspath(where))
    parts: dict[str, dict[int, np.ndarray]] = {}
    names: dict[str, str] = {}
    for shard in sorted(listed):
        _check_shard_name(shard, budget)
        path = os.path.join(directory, shard)
        regular_file(path, budget, f"shard {shard!r}", budget.limits.member_bytes)
        with open_h5(path, budget, shard) as h5:
            got, got_names = store_parts(h5)
        held = {f"/{group}/vars" if group else "/vars" for group, arrays in got.items() if arrays}
        if held != listed[shard]:
            raise budget.fail(
                shard,
                f"holds variables of {sorted(held)[:10]}; the index lists "
                f"{sorted(listed[shard])[:10]} there",
            )
        for group, arrays in got.items():
            mine = parts.setdefault(group, {})
            if set(arrays) & set(mine):
                raise budget.fail(
                    shard, f"{group}/vars repeats variables {sorted(set(arrays) & set(mine))}"
                )
            mine.update(arrays)
        names |= got_names
    raw = {group: in_order(budget, group, got) for group, got in parts.items()}
    return _with_weights(KerasFileContents(where, "sharded-weights-h5"), raw, names, config, budget)


def _shard_index(where: str, budget: Budget) -> dict[str, set[str]]:
    """Shard file name → the vars groups (``/layers/conv2d/vars``) the index lists in it."""
    text = read_regular(where, budget, "", budget.limits.config_bytes, follow=True)
    index = parse_json(text, budget, "")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict):
        raise budget.fail("", "a JSON file but not a Keras sharded weights index (no weight_map)")
    budget.count("weight_map", len(weight_map))
    listed: dict[str, set[str]] = {}
    for group, files in weight_map.items():
        files = [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise budget.fail(f"weight_map[{group!r}]", "expected a shard file name or a list")
        for name in files:
            listed.setdefault(name, set()).add(group)
    return listed


def _check_shard_name(name: str, budget: Budget) -> None:
    """A shard is a plain file name beside the index: no directories, no way out of it."""
    bad = (
        not name
        or name in (".", "..")
        or any(c in name for c in ("/", "\\", "\0"))
        or os.path.basename(name) != name
    )
    if bad:
        raise budget.fail(
            "weight_map", f"names shard {name!r}; expected a file name in the index's directory"
        )


# ----------------------------------------------- the child process (isolate.py)


def encode(contents: KerasFileContents) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``contents`` as JSON with array indices, and the arrays (for ``np.savez``)."""
    arrays: list[np.ndarray] = []

    def refs(values: list[np.ndarray]) -> list[int]:
        arrays.extend(values)
        return list(range(len(arrays) - len(values), len(arrays)))

    def tree(t: Tree) -> dict[str, Any]:
        return {k: tree(v) if isinstance(v, dict) else refs(v) for k, v in t.items()}

    meta = {
        key: getattr(contents, key)
        for key in ("path", "format", "config", "compile_config", "keras_version",
                    "store_names", "nonfinite")
    }  # fmt: skip
    meta["weights"] = tree(contents.weights) if contents.weights is not None else None
    meta["store"] = tree(contents.store) if contents.store is not None else None
    meta["optimizer"] = tree(contents.optimizer) if contents.optimizer is not None else None
    layers = contents.keras2_layers
    meta["keras2_layers"] = [[n, refs(a)] for n, a in layers] if layers is not None else None
    return meta, arrays


def decode(meta: dict[str, Any], arrays: list[np.ndarray]) -> KerasFileContents:
    """The inverse of ``encode``."""

    def tree(t: Any) -> Any:
        if t is None:
            return None
        return {k: tree(v) if isinstance(v, dict) else [arrays[i] for i in v] for k, v in t.items()}

    layers = meta["keras2_layers"]
    return KerasFileContents(
        meta["path"], meta["format"], config=meta["config"],
        compile_config=meta["compile_config"], keras_version=meta["keras_version"],
        weights=tree(meta["weights"]), store=tree(meta["store"]),
        store_names=meta["store_names"],
        keras2_layers=None if layers is None else [(n, [arrays[i] for i in r]) for n, r in layers],
        optimizer=tree(meta["optimizer"]), nonfinite=meta["nonfinite"],
    )  # fmt: skip


def write_result(path: str, meta: dict[str, Any], arrays: list[np.ndarray]) -> None:
    """The child's answer in one ``.npz``: ``arr_0`` the UTF-8 JSON ``meta``, then the arrays."""
    text = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    np.savez(path, text, *arrays, allow_pickle=False)


def load_result(path: str) -> tuple[dict[str, Any], list[np.ndarray]]:
    """What ``write_result`` wrote (no pickles: ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["arr_0"].tobytes().decode("utf-8"))
        return meta, [npz[f"arr_{i}"] for i in range(1, len(npz.files))]


def _limit_memory(nbytes: int | None) -> None:
    if nbytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))


def _serve(request_path: str) -> int:
    """Read the file a request names; write the contents, or the error, where it says."""
    with open(request_path, encoding="utf-8") as fh:
        request = json.load(fh)
    _limit_memory(request.get("memory_bytes"))
    try:
        contents = read(
            request["path"], config=request["config"], limits=Limits(**request["limits"])
        )
        meta, arrays = encode(contents)
    except KerasFileError as exc:
        meta, arrays = {"error": str(exc)}, []
    meta["peak_rss_bytes"] = peak_rss()
    write_result(request["result"], meta, arrays)
    return 0


def peak_rss() -> int | None:
    """This process's peak resident memory since it started this program (Linux ``VmHWM``;
    ``ru_maxrss`` would include the parent's memory at fork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def summary(path: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """What ``--check`` prints for a file: its format and every array's digest, or the error."""
    try:
        contents = read(path, limits=limits)
    except KerasFileError as exc:
        return {"file": path, "error": str(exc)}
    meta, arrays = encode(contents)
    digests = [
        [list(a.shape), a.dtype.str, hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()]
        for a in arrays
    ]
    return {"file": path, "format": contents.format, "arrays": digests,
            "layout": {k: meta[k] for k in ("weights", "store", "keras2_layers", "optimizer")}}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``python reader.py --check FILE ...``: one JSON line per file (``--request``: isolate's)."""
    parser = argparse.ArgumentParser(prog="reader.py", description=main.__doc__)
    parser.add_argument("--request", help="a request file written by torch_cnn.porting.isolate")
    parser.add_argument("--check", nargs="+", default=[], metavar="FILE", help="files to read")
    parser.add_argument("--memory-bytes", type=int, help="address-space limit of this process")
    args = parser.parse_args(argv)
    if args.request:
        return _serve(args.request)
    _limit_memory(args.memory_bytes)
    for path in args.check:
        print(json.dumps(summary(path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
