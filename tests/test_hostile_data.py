"""Hostile CIFAR-10 directories and archives (issue 16): nothing a data directory or a tarball
contains may exhaust memory, crash, hang, read other files or change the result silently.

The corpus comes from ``scripts/make_hostile_data.py``; every case is loaded in one child
process whose address space is capped (what torch needs plus 512 MiB), and each must end in
the expected ``Cifar10Error`` subclass, with a message naming the file and the problem, in
under a second, adding under 64 MiB to the peak RSS. ``test_the_bombs_are_real`` shows that
the same files exhaust memory or kill a process through the loader as it was before the fix.
Then ``torch_cnn._safe_pickle`` on its own, and a bounded fuzz of a real batch.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import os
import pickle
import pickletools
import random
import re
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import load_script, run_python
from torch_cnn import _safe_pickle, data

hostile = load_script("make_hostile_data")

CASE_SECONDS = 1.0  # each case, in the child (they take milliseconds)
CASE_PEAK_BYTES = 64 << 20  # what a case may add to the child's peak RSS
HEADROOM_MIB = 512  # address space the child may add to what torch already holds
FUZZ_MUTANTS = 600


# ---------------------------------------------------------------------------------------------
# The corpus, in a child process under a memory limit


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hostile")
    cases = {c.name: c for c in hostile.write_corpus(root)}
    proc = run_python(
        "scripts/make_hostile_data.py", str(root), "--check", "--headroom-mib", str(HEADROOM_MIB),
        timeout=300,
    )  # fmt: skip
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {"root": root, "cases": cases, "results": {r["name"]: r for r in lines}, "proc": proc}


def test_the_child_ran_every_case_and_exited_cleanly(corpus: dict[str, Any]) -> None:
    proc = corpus["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]  # no signal, no MemoryError escaping
    assert sorted(corpus["results"]) == sorted(corpus["cases"]) == sorted(hostile.CASES)
    assert len(hostile.CASES) >= 70


@pytest.mark.parametrize("name", sorted(hostile.CASES))
def test_hostile_case_is_refused_cleanly(corpus: dict[str, Any], name: str) -> None:
    case, result = corpus["cases"][name], corpus["results"].get(name)
    assert result is not None, f"{name}: the child never reported (killed?)"
    message = result["message"]
    assert (result["error"], result["cifar10_error"]) == (case.error, True), message
    assert case.names in message, f"the message does not name {case.names}: {message}"
    assert re.search(case.problem, message), f"{case.problem!r} not in: {message}"
    assert not re.search(r"MemoryError|RecursionError|Traceback", message), message
    assert result["seconds"] < CASE_SECONDS, f"{name} took {result['seconds']:.2f} s"
    assert result["peak_bytes"] < CASE_PEAK_BYTES, f"{name} added {result['peak_bytes']:,} B"


def test_nothing_ran_and_refused_archives_wrote_nothing(corpus: dict[str, Any]) -> None:
    root: Path = corpus["root"]
    assert not (root / "code_execution.ran").exists()  # os.system was never called
    assert not Path("/tmp/torch_cnn_hostile_evil").exists()
    for case in corpus["cases"].values():
        if case.kind == "tar":
            assert not Path(case.path + ".out").exists(), case.name  # refused before writing


# The loader as it was before the fix: a restricted Unpickler handing numpy's real globals out.
OLD_LOADER = """
import pickle, resource, sys, numpy as np
from numpy._core import multiarray, numeric
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
limit = int(status["VmSize"].split()[0]) * 1024 + {headroom} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
ALLOWED = {{("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
           ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}}
class Old(pickle.Unpickler):
    def find_class(self, module, name):
        return ALLOWED[(module, name)]
try:
    batch = Old(open(sys.argv[1], "rb"), encoding="bytes").load()
    print("loaded", {{k: getattr(v, "shape", None) for k, v in batch.items()}})
except MemoryError as exc:
    print("MemoryError", exc)
"""


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("reconstruct_no_data", "MemoryError"),  # 921 MB claimed by a 300-byte file
        ("reconstruct_no_data_huge", "MemoryError"),
        ("ndarray_called", "MemoryError"),
        ("object_array_state", "MemoryError"),
        ("deep_tuple_key", "SIGSEGV"),
    ],
)
def test_the_bombs_are_real(corpus: dict[str, Any], name: str, outcome: str) -> None:
    """The corpus's bombs do what they claim through the old loader (numpy only, no torch)."""
    path = Path(corpus["cases"][name].path) / "data_batch_1"
    code = OLD_LOADER.format(headroom=HEADROOM_MIB)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    if outcome == "SIGSEGV":
        assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stdout, proc.stderr)
    else:
        assert proc.stdout.startswith(outcome), (proc.returncode, proc.stdout, proc.stderr[-500:])


def test_a_huge_memo_index_costs_nothing(tmp_path: Path) -> None:
    """Not refused (the batch is valid), but no longer a bomb: the old loader's C unpickler
    allocates a memo table sized by the index; the pure-Python one keeps a dict."""
    root = hostile.write_base(tmp_path / "cifar")
    (root / "data_batch_1").write_bytes(hostile.memo_index_batch())
    code = OLD_LOADER.format(headroom=HEADROOM_MIB)
    old = subprocess.run(
        [sys.executable, "-c", code, str(root / "data_batch_1")], capture_output=True, text=True
    )
    assert old.stdout.startswith("MemoryError"), (old.returncode, old.stdout, old.stderr[-500:])
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = hostile._status()["VmRSS"]
    ds = data.load_cifar10(root)
    assert hostile._status()["VmHWM"] - before < CASE_PEAK_BYTES
    assert ds.train.labels[0].item() == 7 and len(ds.train) == 1 + 4 * hostile.SMALL_N


# ---------------------------------------------------------------------------------------------
# What the corpus cannot hold: permissions (as root they do not apply) and accepted layouts


def _denied(path: Path, monkeypatch: pytest.MonkeyPatch, *, listing: bool = False) -> None:
    """Make ``path`` unreadable: chmod where that works, else (as root) a refusing os call."""
    path.chmod(0o000)
    if os.access(path, os.R_OK):  # root: permissions do not apply, so the OS call refuses instead
        target = os.listdir if listing else os.open
        name = "listdir" if listing else "open"

        def refuse(p: Any, *args: Any, **kwargs: Any) -> Any:
            if Path(p) == path:
                raise PermissionError(errno.EACCES, "Permission denied", str(p))
            return target(p, *args, **kwargs)

        monkeypatch.setattr(os, name, refuse)


def test_unreadable_batch_is_a_file_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = hostile.write_base(tmp_path / "cifar")
    _denied(root / "data_batch_2", monkeypatch)
    with pytest.raises(data.Cifar10FileError, match=r"data_batch_2: permission denied; expected"):
        data.load_cifar10(root)


def test_unlistable_data_dir_is_a_file_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = hostile.write_base(tmp_path / "cifar")
    _denied(root, monkeypatch, listing=True)
    try:
        with pytest.raises(data.Cifar10FileError, match=rf"{root} cannot be listed"):
            data.load_cifar10(root)
    finally:
        root.chmod(0o755)


def test_the_named_data_dir_may_be_a_link(tmp_path: Path) -> None:
    root = hostile.write_base(tmp_path / "real")
    (tmp_path / "link").symlink_to(root)
    assert len(data.load_cifar10(tmp_path / "link").train) == 5 * hostile.SMALL_N
    # ...but the extracted-tarball subdirectory found inside it may not be a link elsewhere.
    (tmp_path / "parent").mkdir()
    (tmp_path / "parent" / data.CIFAR10_DIRNAME).symlink_to(root)
    with pytest.raises(data.Cifar10NotFoundError, match=r"parent lacks data_batch_1"):
        data.load_cifar10(tmp_path / "parent")


def test_a_python2_full_size_batch_loads_unchanged(tmp_path: Path) -> None:
    """10,000 images in the official files' own encoding (cPickle protocol 2, BINSTRING, memoised
    file names): the opcode cap leaves room for them, the arrays arrive bit for bit."""
    root = hostile.write_base(tmp_path / "cifar")
    batch = hostile.fake_batch(10_000, 1)
    (root / "data_batch_1").write_bytes(hostile.py2_batch(batch))
    ds = data.load_cifar10(root)
    assert len(ds.train) == 10_000 + 4 * hostile.SMALL_N
    np.testing.assert_array_equal(
        ds.train.images[:10_000].numpy().reshape(10_000, -1), batch[b"data"]
    )
    assert ds.train.labels[:10_000].tolist() == batch[b"labels"]
    # The same bytes through plain pickle (a trusted file): the same arrays.
    plain = pickle.loads((root / "data_batch_1").read_bytes(), encoding="bytes")
    np.testing.assert_array_equal(plain[b"data"], batch[b"data"])


@pytest.mark.slow
def test_the_full_dataset_layout_loads(tmp_path: Path) -> None:
    root = hostile.write_py2_cifar(tmp_path / "cifar", n=10_000)
    start = time.perf_counter()
    ds = data.load_cifar10(root)
    seconds = time.perf_counter() - start
    assert ds.train.images.shape == (50_000, 3, 32, 32) and ds.test.images.shape == (
        10_000,
        3,
        32,
        32,
    )
    for i, name in enumerate(data.TRAIN_FILES):
        want = hostile.fake_batch(10_000, i + 1)
        got = ds.train.images[i * 10_000 : (i + 1) * 10_000].numpy().reshape(10_000, -1)
        np.testing.assert_array_equal(got, want[b"data"], err_msg=name)
        assert ds.train.labels[i * 10_000 : (i + 1) * 10_000].tolist() == want[b"labels"]
    print(f"loaded the 60,000 images in {seconds:.1f} s")


def _tarball(tmp_path: Path, mode: str = "w:gz") -> tuple[Path, int, int]:
    """A valid CIFAR-10 tarball; its member count and the bytes its files declare."""
    src = hostile.write_base(tmp_path / "src" / data.CIFAR10_DIRNAME)
    archive = tmp_path / ("cifar.tar.gz" if mode == "w:gz" else "cifar.tar")
    with tarfile.open(archive, mode) as tar:
        tar.add(src, arcname=data.CIFAR10_DIRNAME)
    files = list(src.iterdir())
    return archive, len(files) + 1, sum(p.stat().st_size for p in files)


def test_archive_caps_are_exact(tmp_path: Path) -> None:
    archive, members, size = _tarball(tmp_path)
    with pytest.raises(data.Cifar10FormatError, match=rf"more than {members - 1} members"):
        data.extract_tarball(archive, tmp_path / "a", max_members=members - 1)
    with pytest.raises(data.Cifar10FormatError, match=rf"declare more than {size - 1:,} bytes"):
        data.extract_tarball(archive, tmp_path / "b", max_bytes=size - 1)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    data.extract_tarball(archive, tmp_path / "c", max_members=members, max_bytes=size)
    assert len(data.load_cifar10(tmp_path / "c" / data.CIFAR10_DIRNAME).train) == 15


def test_an_archive_member_cut_short_is_a_format_error(tmp_path: Path) -> None:
    archive, _, _ = _tarball(tmp_path, mode="w")
    blob = archive.read_bytes()
    end = blob.rstrip(b"\0")  # the last member's data ends where the zero padding begins
    cut = tmp_path / "cut.tar"
    cut.write_bytes(end[:-100])
    problem = r"cut\.tar: (not a readable tar archive \(unexpected end of data|member .* truncated)"
    with pytest.raises(data.Cifar10FormatError, match=problem):
        data.extract_tarball(cut, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()  # found while listing, before anything was written


# ---------------------------------------------------------------------------------------------
# torch_cnn._safe_pickle on its own (the unpickler the Keras .npz reader shares)

PLAIN_DATA: list[Any] = [
    {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3]},
    {"x": (1.5, None, True, "é", b"\x00", b"", 2**100, -5)},
    np.arange(6, dtype=">f4").reshape(2, 3),
    np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3)),
    np.array(3.5),
    np.zeros((0, 3072), np.uint8),
    [np.ones(5, np.float16), np.ones(2, np.complex64), np.array([True, False])],
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray):
        return (
            type(b) is np.ndarray
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.flags.f_contiguous == b.flags.f_contiguous
            and np.array_equal(a, b)
        )
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("protocol", range(6))
def test_safe_pickle_reads_what_pickle_writes(protocol: int) -> None:
    for obj in PLAIN_DATA:
        raw = pickle.dumps(obj, protocol=protocol)
        assert _same(_safe_pickle.loads(raw), pickle.loads(raw)), (protocol, obj)


def test_safe_pickle_object_arrays_only_when_allowed() -> None:
    """Keras's .npz weights: np.save of a 0-d object array holding a dict of arrays."""
    weights = {"0": np.arange(3.0), "1": np.zeros((2, 2), np.float32)}
    buf = io.BytesIO()
    np.save(buf, np.array(weights, dtype=object), allow_pickle=True)
    buf.seek(0)
    np.lib.format.read_magic(buf)
    np.lib.format.read_array_header_1_0(buf)
    payload = buf.read()
    with pytest.raises(_safe_pickle.PickleLimitError, match=r"object arrays are not allowed"):
        _safe_pickle.loads(payload)
    allow = _safe_pickle.PickleLimits(allow_object_arrays=True)
    got = _safe_pickle.loads(payload, limits=allow, encoding="latin1")
    assert isinstance(got, np.ndarray) and got.dtype == object and got.shape == ()
    assert _same(got[()], weights)


def _nested(depth: int) -> bytes:
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def test_safe_pickle_caps_are_exact() -> None:
    limits = _safe_pickle.PickleLimits(max_depth=5, max_ops=100, max_array_bytes=1000)
    assert _safe_pickle.loads(_nested(5), limits=limits) == [[[[[]]]]]
    with pytest.raises(_safe_pickle.PickleLimitError, match=r"nested deeper than 5"):
        _safe_pickle.loads(_nested(6), limits=limits)
    ops = b"\x80\x02(" + b"N" * 96 + b"l."  # PROTO, MARK, 96 NONE, LIST, STOP: 100 opcodes
    assert _safe_pickle.loads(ops, limits=limits) == [None] * 96
    with pytest.raises(_safe_pickle.PickleLimitError, match=r"more than 100 opcodes"):
        _safe_pickle.loads(ops[:-2] + b"Nl.", limits=limits)
    ok, over = np.zeros(1000, np.uint8), np.zeros(1001, np.uint8)
    assert _safe_pickle.loads(pickle.dumps(ok), limits=limits).shape == (1000,)
    with pytest.raises(_safe_pickle.PickleLimitError, match=r"exceeds the cap of 1000 bytes"):
        _safe_pickle.loads(pickle.dumps(over), limits=limits)


def test_safe_pickle_shared_structures_cost_one_visit_each() -> None:
    """A list holding one list twice, 60 deep: 2**60 paths, but 60 containers to check."""
    raw = b"\x80\x02]q\x00"  # list 0; list i = [list i-1, list i-1] (from the memo)
    for i in range(1, 60):
        raw += b"](h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"eq" + bytes([i])
    start = time.perf_counter()
    with pytest.raises(_safe_pickle.PickleLimitError, match=r"nested deeper than 50"):
        _safe_pickle.loads(raw + b".", limits=_safe_pickle.PickleLimits(max_depth=50))
    assert _safe_pickle.loads(raw + b".", limits=_safe_pickle.PickleLimits(max_depth=60))
    # Milliseconds when each container is checked once; 2**60 visits would never end.
    assert time.perf_counter() - start < 30.0


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\x80\x02c__builtin__\neval\n.", r"global __builtin__\.eval is not allowed"),
        (b"\x80\x02cnumpy\nndarray\n)\x81.", r"opcode NEWOBJ is not allowed"),
        (b"\x80\x04\x8f.", r"opcode EMPTY_SET is not allowed"),
        (b"\x80\x02}(K\x01K\x02\x86Nu.", r"dict key \(1, 2\)"),
        (b"\x80\x02]q\x00h\x00a.", r"a container holds itself"),
        (b"\x80\x02}(K\x01K\x02K\x03u.", r"SETITEMS with an odd number of items"),
        (b"\x80\x02(K\x01d.", r"DICT with an odd number of items"),
        (b"\x80\x02K\x01K\x02b.", r"BUILD on 1"),
        (b"\x80\x02\xff.", r"invalid opcode"),
        (b"\x80\x02B\xff\xff\xff\x7f.", r"declares 2147483647 bytes, 1 remain"),
        (b"\x80\x02", r"ended early"),
    ],
)
def test_safe_pickle_refusals(raw: bytes, problem: str) -> None:
    with pytest.raises(_safe_pickle.SafePickleError, match=problem):
        _safe_pickle.loads(raw)


def test_safe_pickle_a_placeholder_never_built_stays_empty() -> None:
    # numpy's placeholder with no BUILD is what numpy itself would give: an empty int8 array.
    raw = hostile.op_placeholder() + b"."
    got = _safe_pickle.loads(b"\x80\x02" + raw)
    assert isinstance(got, np.ndarray) and got.shape == (0,) and got.nbytes == 0


class _Recorded(_safe_pickle.StandIn):
    """A stand-in whose own methods must never run."""

    def __init__(self, *args: Any) -> None:
        raise AssertionError("a stand-in's __init__ ran")

    def __setstate__(self, state: Any) -> None:
        raise AssertionError("a stand-in's __setstate__ ran")


STAND_INS = {("m", "Obj"): _Recorded}
GLOBAL_OBJ = b"\x80\x04\x8c\x01m\x8c\x03Obj\x93"  # PROTO 4, the global m.Obj


def test_safe_pickle_stand_ins_record_and_run_nothing() -> None:
    """NEWOBJ then BUILD (how Keras's variables pickle), REDUCE, and a call of an instance
    (TensorFlow's ``partial(...)()``): records, made by the unpickler itself."""
    raw = GLOBAL_OBJ + b"(K\x01t\x81}\x8c\x01k\x8f\x94s" + b"b"  # m.Obj(1) NEWOBJ, BUILD {k: set()}
    raw += b")R" + b"."  # ... then called with no arguments
    got = _safe_pickle.loads(raw, stand_ins=STAND_INS)
    assert type(got) is _safe_pickle.StandIn and len(got.args) == 1
    made = got.args[0]
    assert type(made) is _Recorded and made.args == (1,) and made.state == {"k": set()}
    reduced = _safe_pickle.loads(GLOBAL_OBJ + b"K\x02\x85R.", stand_ins=STAND_INS)
    assert type(reduced) is _Recorded and reduced.args == (2,) and reduced.state is None


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (GLOBAL_OBJ + b")\x81}b}b.", r"BUILD twice on _Recorded"),
        (GLOBAL_OBJ + b")\x81\x94h\x00\x85b.", r"a container holds itself"),
        (b"\x80\x04cnumpy\nndarray\n)\x81.", r"NEWOBJ on numpy\.ndarray"),
        (b"\x80\x04\x8f(K\x01\x90.", r"opcode ADDITEMS is not allowed \(it builds sets\)"),
        (b"\x80\x04cos\nsystem\n.", r"global os\.system is not allowed \(only .* bytes, m\.Obj\)"),
        (GLOBAL_OBJ + b"K\x01R.", r"REDUCE with arguments 1"),
    ],
)
def test_safe_pickle_stand_in_refusals(raw: bytes, problem: str) -> None:
    with pytest.raises(_safe_pickle.SafePickleError, match=problem):
        _safe_pickle.loads(raw, stand_ins=STAND_INS)


# ---------------------------------------------------------------------------------------------
# Fuzzing: byte-level mutants of a real batch and of the real batches.meta


_OLD_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.numeric", "_frombuffer"): np._core.numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): lambda s, e="latin1": s.encode("latin1"),
    ("__builtin__", "bytes"): bytes,
}


class _OldStyle(pickle._Unpickler):  # type: ignore[name-defined, misc]
    """The reference for an accepted mutant: pickle's own pure-Python unpickler with numpy's
    real globals (not the C one: a LONG_BINPUT index of 2**31 makes it allocate a 16 GiB memo).

    Only run on mutants the safe loader accepted (so their arrays have their bytes and their
    keys are plain: nothing here can allocate or recurse beyond what was already checked).
    """

    def find_class(self, module: str, name: str) -> Any:
        return _OLD_GLOBALS[(module, name)]


def _payload_span(raw: bytes) -> tuple[int, int]:
    """Where the pixels are: the opcode with the longest argument."""
    starts = [pos for _, _, pos in pickletools.genops(raw)]
    return max(itertools.pairwise(starts), key=lambda span: span[1] - span[0])


INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def _mutate(raw: bytes, rng: random.Random, span: tuple[int, int]) -> bytes:
    """One byte-level mutation, mostly outside the pixel payload (where every byte is valid)."""
    n = len(raw)
    pos = rng.randrange(n)
    if span[1] > span[0] and rng.random() < 0.8:
        while span[0] <= pos < span[1]:
            pos = rng.randrange(n)
    kind = rng.randrange(7)
    if kind == 0:
        return raw[:pos] + bytes([raw[pos] ^ (1 << rng.randrange(8))]) + raw[pos + 1 :]
    if kind == 1:
        return raw[:pos] + bytes([rng.choice([0, 1, 0x7F, 0x80, 0xFF])]) + raw[pos + 1 :]
    if kind == 2:
        return raw[:pos] + raw[pos + rng.randint(1, 8) :]
    if kind == 3:
        return raw[:pos] + rng.randbytes(rng.randint(1, 8)) + raw[pos:]
    if kind == 4:
        word = rng.choice(INTERESTING).to_bytes(4, "little")
        return raw[:pos] + word + raw[pos + 4 :]
    if kind == 5:
        return raw[:pos]
    size = rng.randint(1, 64)
    return raw[:pos] + raw[pos : pos + size] + raw[pos:]


def _reference(raw: bytes) -> dict[bytes, Any]:
    obj = _OldStyle(io.BytesIO(raw), encoding="bytes").load()
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


@pytest.fixture
def fuzz_dir(cifar10_dir: Path, tmp_path: Path) -> Iterator[tuple[Path, dict[str, bytes]]]:
    """Real images in a small directory: 2 of data_batch_1, the real batches.meta."""
    real = pickle.loads((cifar10_dir / "data_batch_1").read_bytes(), encoding="bytes")
    small = {b"batch_label": real[b"batch_label"], b"labels": real[b"labels"][:2]}
    small[b"data"] = real[b"data"][:2]
    root = hostile.write_base(tmp_path / "cifar")
    small[b"filenames"] = [b"a.png", b"b.png"]
    originals = {
        "data_batch_1": pickle.dumps(small, protocol=2),  # as Python 3 re-pickles it
        "data_batch_2": hostile.py2_batch(small),  # as the official files are written
        "test_batch": pickle.dumps(small, protocol=5),
        "batches.meta": (cifar10_dir / "batches.meta").read_bytes(),
    }
    for name, raw in originals.items():
        (root / name).write_bytes(raw)
    yield root, originals


def _check_mutant(root: Path, name: str, mutant: bytes, base: Any) -> str:
    """'same', 'changed' (and equal to what pickle reads) or 'refused'; anything else raises."""
    try:
        ds = data.load_cifar10(root)
    except data.Cifar10Error as exc:
        assert str(root / name) in str(exc) or str(root) in str(exc), str(exc)
        return "refused"
    if name == "batches.meta":
        want = [s.decode() for s in _reference(mutant)[b"label_names"]]
        assert ds.classes == want
        return "same" if ds.classes == base.classes else "changed"
    split, old = (ds.test, base.test) if name == "test_batch" else (ds.train, base.train)
    start = 2 if name == "data_batch_2" else 0  # after data_batch_1's two images
    ref = _reference(mutant)
    n = len(ref[b"labels"])
    assert split.labels[start : start + n].tolist() == list(ref[b"labels"])
    got = split.images[start : start + n].numpy().reshape(n, -1)
    np.testing.assert_array_equal(got, ref[b"data"])
    same = len(split) == len(old) and bool((split.images == old.images).all())
    return "same" if same and bool((split.labels == old.labels).all()) else "changed"


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError("a mutant took more than 5 s")


@pytest.mark.data
def test_fuzzed_batches_load_the_same_or_are_refused(
    fuzz_dir: tuple[Path, dict[str, bytes]],
) -> None:
    root, originals = fuzz_dir
    base = data.load_cifar10(root)
    rng = random.Random(16)
    spans = {name: _payload_span(raw) for name, raw in originals.items()}
    outcomes: dict[str, int] = {"same": 0, "changed": 0, "refused": 0}
    failures = []
    signal.signal(signal.SIGALRM, _alarm)
    start = time.perf_counter()
    for i in range(FUZZ_MUTANTS):
        name = rng.choice(list(originals))
        mutant = originals[name]
        for _ in range(rng.choice((1, 1, 2, 3))):  # mostly one mutation, sometimes a few
            mutant = _mutate(mutant, rng, spans[name]) or mutant
        (root / name).write_bytes(mutant)
        signal.alarm(5)
        try:
            outcomes[_check_mutant(root, name, mutant, base)] += 1
        except Exception as exc:  # the finding: keep the mutant to reproduce it
            failures.append(f"mutant {i} of {name} ({mutant.hex()}): {type(exc).__name__}: {exc}")
        finally:
            signal.alarm(0)
        (root / name).write_bytes(originals[name])
    seconds = time.perf_counter() - start
    print(f"fuzz: {outcomes} in {seconds:.2f} s")
    assert failures == [], "\n".join(failures[:5])
    assert sum(outcomes.values()) == FUZZ_MUTANTS
    assert outcomes["refused"] > FUZZ_MUTANTS // 4 and outcomes["same"] > 0, outcomes
