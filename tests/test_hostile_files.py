"""Hostile Keras files (issue 16, classes 1–3): refused by the public API, in bounded memory and time.

The corpus comes from ``scripts/make_hostile_corpus.py`` (one case per file, written into a
temporary directory). Every case is read through ``read_keras_source``: refused with
``PortingError`` naming the file and the problem, or read with the right weights. Cases that
would hang, crash or allocate gigabytes if a guard failed are read in the reader's child
process under a 1 GiB address-space limit and a time limit, and the child's fate is checked:
a clean exit, its own peak memory, its wall time. The slow tests read every case that way
and fuzz each format (fixed seed): every mutant is read as its bytes say or refused — no
other exception, no signal, no hang (a mutant that crashes or hangs libhdf5 must be turned
into an error by the child process; such files are kept in ``tests/hostile/``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import select
import signal
import subprocess
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import ROOT, load_script
from torch_cnn.porting import PortingError, isolate, reader
from torch_cnn.porting.keras_files import read_keras_source
from torch_cnn.porting.reader_limits import GIB, MIB, KerasFileError, Limits

corpus = load_script("make_hostile_corpus")
vm_status = load_script("make_hostile_data")._status  # VmSize, VmRSS, VmHWM in bytes
SAFE = [name for name, case in corpus.CASES.items() if not case.danger]
DANGER = [name for name, case in corpus.CASES.items() if case.danger and not case.reads]
ISSUE_CASES = ["h5-declares-3.6GB-in-205KB", "keras-member-declares-2GiB",
               "h5-external-link-to-fifo-in-weight-path"]  # fmt: skip
REGRESSIONS = ROOT / "tests" / "hostile"
CHILD_MEMORY = 1 * GIB  # the child's address space: the reader needs ~120 MiB of it
RSS_BOUND = 200 * MIB  # its peak resident memory on any case (about 50 MiB)
TIMEOUT = 30.0  # seconds, per case
REGRESSION_TIMEOUT = 3.0  # the kept mutants spin for minutes: any limit stops them


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def arrays(contents: reader.KerasFileContents) -> list[np.ndarray]:
    """Every array a read returned, in ``reader.encode``'s order."""
    return reader.encode(contents)[1]


def check_read(name: str, contents: reader.KerasFileContents) -> None:
    """What a case that must read holds: the base file's weights, or reported NaN/Inf."""
    case = corpus.CASES[name]
    if case.reads == "same":
        want = arrays(reader.read(corpus.BASE[case.base]))
        got = arrays(contents)
        assert [(a.dtype, a.shape) for a in got] == [(b.dtype, b.shape) for b in want], name
        assert all(a.tobytes() == b.tobytes() for a, b in zip(got, want, strict=True)), name
    elif case.reads == "nonfinite":
        assert contents.nonfinite and "layers/conv2d_1/vars/0" in contents.nonfinite[0]
    else:
        assert case.reads == "any" and arrays(contents), name


def check_refusal(name: str, path: Path, message: str) -> None:
    assert str(path) in message, message
    assert corpus.CASES[name].expect in message, message


def read_in_child(name: str, path: Path) -> isolate.ChildRead:
    """The case read in the reader's child process; its fate checked."""
    limits = Limits(**(corpus.CASES[name].limits or {}))
    result = isolate.run_reader(path, limits=limits, memory_bytes=CHILD_MEMORY, timeout=TIMEOUT)
    fate = result.fate
    assert (fate.exit_code, fate.signal, fate.timed_out) == (0, None, False), fate
    assert fate.peak_rss_bytes is not None and fate.peak_rss_bytes < RSS_BOUND, fate
    assert fate.wall_s < TIMEOUT
    return result


@pytest.mark.parametrize("name", SAFE)
def test_a_hostile_file_is_refused_in_process(name: str, corpus_dir: Path) -> None:
    case = corpus.CASES[name]
    path = corpus.make_case(name, corpus_dir)
    limits = Limits(**(case.limits or {}))
    if case.reads == "nonfinite":
        with pytest.warns(RuntimeWarning, match="NaN or Inf in 1 weight arrays"):
            check_read(name, read_keras_source(path, isolate=False, limits=limits))
    elif case.reads:
        check_read(name, read_keras_source(path, isolate=False, limits=limits))
    else:
        with pytest.raises(PortingError) as info:
            read_keras_source(path, isolate=False, limits=limits)
        check_refusal(name, path, str(info.value))


@pytest.mark.parametrize("name", DANGER)
def test_a_dangerous_file_is_refused_by_a_bounded_child(name: str, corpus_dir: Path) -> None:
    path = corpus.make_case(name, corpus_dir)
    result = read_in_child(name, path)
    assert result.error is not None
    check_refusal(name, path, str(result.error))


@pytest.mark.parametrize("name", ISSUE_CASES)
def test_the_issue_cases_are_refused_by_the_public_api(name: str, corpus_dir: Path) -> None:
    path = corpus.make_case(name, corpus_dir)
    if name.startswith("h5-declares"):
        assert 150_000 < path.stat().st_size < 260_000  # the issue's 205 KB file
    with pytest.raises(PortingError) as info:
        read_keras_source(path)  # isolated: the default
    check_refusal(name, path, str(info.value))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(corpus.CASES))
def test_every_case_in_a_bounded_child(name: str, corpus_dir: Path) -> None:
    path = corpus.make_case(name, corpus_dir)
    result = read_in_child(name, path)
    if corpus.CASES[name].reads:
        assert result.error is None and result.contents is not None, result.error
        check_read(name, result.contents)
    else:
        assert result.error is not None
        check_refusal(name, path, str(result.error))


# The C unpickler the npz reader once used, every global an inert stub, under an address-space
# limit: the memo table it sizes by the largest index does not fit.
C_UNPICKLER = """
import io, pickle, resource, sys
class Stub:
    def __init__(self, *args, **kwargs): pass
    def __setstate__(self, state): pass
    def __call__(self, *args, **kwargs): return self
class Old(pickle.Unpickler):
    def find_class(self, module, name): return Stub
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines())
limit = int(status["VmSize"].split()[0]) * 1024 + 512 * 2**20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
try:
    Old(io.BytesIO(sys.stdin.buffer.read())).load()
    print("read")
except MemoryError:
    print("MemoryError")
"""


def test_a_huge_npz_memo_index_costs_nothing_in_process(corpus_dir: Path) -> None:
    """Keras npz weights whose pickle memoises at index 2**31 - 1 (valid, so not refused): the
    C unpickler runs out of 512 MiB; ``_safe_pickle``'s dict memo reads the file in process as
    its base, within a few MiB."""
    path = corpus.make_case("npz-memo-index-2gi", corpus_dir)
    with (
        zipfile.ZipFile(path) as keras_zip,
        zipfile.ZipFile(io.BytesIO(keras_zip.read("model.weights.npz"))) as npz,
    ):
        npy = io.BytesIO(npz.read("layers/dense.npy"))
    np.lib.format.read_magic(npy)
    np.lib.format.read_array_header_1_0(npy)
    old = subprocess.run(
        [sys.executable, "-c", C_UNPICKLER], input=npy.read(), capture_output=True, check=False
    )
    assert old.stdout.decode().strip() == "MemoryError", (old.returncode, old.stderr[-500:])
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = vm_status()["VmRSS"]
    contents = read_keras_source(path, isolate=False)
    assert vm_status()["VmHWM"] - before < 64 * MIB
    check_read("npz-memo-index-2gi", contents)


def test_mutants_that_once_crashed_or_hung_are_refused() -> None:
    """Regression files kept from the fuzzer (``tests/hostile/README.md``): libhdf5 spins on
    them for minutes; the child is stopped at its time limit and the caller gets an error."""
    files = sorted(p for p in REGRESSIONS.iterdir() if p.suffix == ".h5")
    assert len(files) >= 4, f"regression files missing from {REGRESSIONS}"
    with ThreadPoolExecutor(len(files)) as pool:  # the time limits run side by side
        results = list(pool.map(lambda p: isolate.run_reader(p, timeout=REGRESSION_TIMEOUT), files))
    for path, result in zip(files, results, strict=True):
        assert isinstance(result.error, KerasFileError) and str(path) in str(result.error), path
        assert result.fate.timed_out or result.fate.signal is not None, (path, result.fate)
        assert result.fate.wall_s < REGRESSION_TIMEOUT + 5, path


# ---------------------------------------------------------------------- fuzzing

FUZZ_SEED = 16
FUZZ_MUTANTS = 250  # per format
FUZZ_BASES = {"keras": "model.keras", "h5": "model.h5", "weights": "model.weights.h5",
              "keras2": "weights.h5"}  # fmt: skip
STALL_S = 8.0  # no answer for this long: the mutant in hand hangs the reader (ms normally)


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One byte set or bit-flipped, or a range of 2–64 bytes randomised, zeroed or set to 0xFF."""
    out = bytearray(data)
    at = int(rng.integers(len(out)))
    kind = int(rng.integers(5))
    if kind == 0:
        out[at] = int(rng.integers(256))
    elif kind == 1:
        out[at] ^= 1 << int(rng.integers(8))
    else:
        end = min(len(out), at + int(rng.integers(2, 65)))
        fill = {2: rng.bytes(end - at), 3: bytes(end - at), 4: b"\xff" * (end - at)}[kind]
        out[at:end] = fill
    return bytes(out)


def expected_digests(base: Path, mutant: bytes) -> list[list[Any]]:
    """What a mutant that reads must hold: each base array's bytes, taken where the base
    file stores them (stored uncompressed, so a mutation inside a weight changes exactly
    that weight: the only change HDF5, which has no checksum on data, cannot notice)."""
    data = base.read_bytes()
    out = []
    for a in arrays(reader.read(base)):
        raw = a.tobytes()
        at = data.find(raw)
        assert at >= 0 and data.find(raw, at + 1) < 0, "a base array not stored once, as is"
        digest = hashlib.sha256(mutant[at : at + len(raw)]).hexdigest()
        out.append([list(a.shape), a.dtype.str, digest])
    return out


def run_batch(paths: list[Path]) -> tuple[dict[Path, dict[str, Any]], dict[Path, str]]:
    """``reader.py --check`` over ``paths`` in as few children as possible.

    Returns each file's summary, and the files that crashed or hung a child (restarted
    after them).
    """
    answers: dict[Path, dict[str, Any]] = {}
    fates: dict[Path, str] = {}
    todo = list(paths)
    while todo:
        proc = subprocess.Popen(
            [sys.executable, str(isolate.READER), "--memory-bytes", str(CHILD_MEMORY),
             "--check", *map(str, todo)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip
        assert proc.stdout is not None
        done = 0
        while done < len(todo):
            ready, _, _ = select.select([proc.stdout], [], [], STALL_S)
            line = proc.stdout.readline() if ready else b""
            if not line:
                break
            answers[todo[done]] = json.loads(line)
            done += 1
        if done < len(todo):  # a crash, an escaped exception or a hang on todo[done]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
            stderr = proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
            fates[todo[done]] = (
                f"exit {code} (signal {-code})" if code < 0 else f"exit {code}: {stderr}"
            )
            if code == -signal.SIGKILL:
                fates[todo[done]] = "hang"
            done += 1
        else:
            proc.wait()
        todo = todo[done:]
    return answers, fates


@pytest.mark.slow
def test_fuzzed_files_are_read_as_they_are_or_refused(tmp_path: Path, record_property: Any) -> None:
    rng = np.random.default_rng(FUZZ_SEED)
    start = time.monotonic()
    mutants: dict[Path, tuple[Path, list[list[Any]]]] = {}
    for key, name in FUZZ_BASES.items():
        base = corpus.BASE[key]
        assert base.name == name
        data = base.read_bytes()
        for i in range(FUZZ_MUTANTS):
            mutant = mutate(data, rng)
            path = tmp_path / f"{key}_{i:03d}_{name}"
            path.write_bytes(mutant)
            mutants[path] = (base, expected_digests(base, mutant))
    answers, fates = run_batch(list(mutants))
    elapsed = time.monotonic() - start

    misread = []
    for path, answer in answers.items():
        if "error" in answer:
            assert str(path) in answer["error"]
        elif answer["arrays"] != mutants[path][1]:
            misread.append(path)
    kept = {_sha(p) for p in REGRESSIONS.iterdir() if p.suffix == ".h5"}
    new = {str(p): fate for p, fate in fates.items() if _sha(p) not in kept}
    for path in map(Path, new):  # would have crashed or hung the caller: an error in the child
        result = isolate.run_reader(path, memory_bytes=CHILD_MEMORY, timeout=TIMEOUT)
        assert result.error is not None and str(path) in str(result.error), path
    refused = sum("error" in a for a in answers.values())
    record_property("fuzz", f"{len(mutants)} mutants, {refused} refused, "
                    f"{len(answers) - refused} read, {len(fates)} crashed or hung, {elapsed:.1f} s")  # fmt: skip
    print(f"fuzz: {len(mutants)} mutants: {refused} refused, {len(answers) - refused} read as "
          f"their bytes say, {len(fates)} crashed or hung the reader ({elapsed:.1f} s)")  # fmt: skip
    assert not misread, f"read with other weights than their bytes hold: {misread}"
    assert not new, f"crashed or hung the in-process reader; keep them in tests/hostile/: {new}"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
