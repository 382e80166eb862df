"""Untrusted Keras files, read where a crash or a hang cannot take the caller down.

What torch-cnn promises for a Keras file from anyone (``.keras`` archives and directories,
legacy ``.h5``, ``.weights.h5`` and its sharded ``.weights.json``, Keras 2 weights ``.h5``):

- **Nothing in a file runs.** Configs are JSON read as data; nothing a config names is
  imported. ``model.weights.npz`` pickles are read by the unpickler CIFAR-10 batches are
  (``torch_cnn._safe_pickle``), which knows no real global: NumPy arrays are rebuilt from
  the bytes the pickle carries, Keras variables are inert stand-ins (``reader_zip``), and
  anything else is refused by name.
- **Nothing outside the file is read.** Every component of every HDF5 path must be a hard
  link, checked without following it (``name in group`` would already follow it: h5py
  resolves the link to test it, and an external link to a FIFO blocks right there): soft
  and external links at any depth (e.g. inside ``model_weights/<layer>/``), external
  storage, virtual datasets, absolute names and ``..`` are refused, so no other file, FIFO
  or device is ever opened. Shards must be plain file names beside their index and regular
  files, as must a ``.keras`` directory's members (not symbolic links). HDF5 filters other
  than those built into HDF5 and h5py are refused; the child sees no plugin directory.
- **Sizes are checked before anything is read** (``reader_limits.Limits``; the defaults):
  one array ≤ 1 GiB, all arrays of a file ≤ 4 GiB, an archive member ≤ 4 GiB inflated and
  ≤ 100× its compressed size above 1 MiB (counted while inflating, never trusting the
  declared size alone), ``config.json`` and any other JSON or attribute ≤ 64 MiB and ≤ 100
  levels deep, ≤ 10,000 layers, ≤ 200,000 HDF5 links, archive members or npz variables,
  HDF5 groups ≤ 64 deep. A dataset declaring more than 64 KiB and more than 100× the bytes
  it stores, contiguous data of another size than declared, or data past the end of the
  file, is refused. Encrypted members and compression methods Keras does not write (it
  writes stored and deflated) are refused.
- **Only numbers are loaded:** float16/32/64 in either byte order (returned in the
  machine's: Keras reads big-endian files bit-identically) and integer scalars (counters:
  Normalization's ``count``, an optimizer's iterations); integer arrays, bool, complex,
  strings, compound, float128 and bfloat16-tagged data are refused naming the layer and
  dataset. NaN and Inf are loaded and reported (``KerasFileContents.nonfinite``; the
  library's readers warn).
- **Native crashes and hangs stay in a child process.** A damaged file can make libhdf5
  crash or spin for minutes; ``read_isolated`` (what ``from_keras``, ``load_keras_weights``
  and the CLI use) parses the file in a child process (``python reader.py``: NumPy and
  h5py, no torch; about 0.3 s to start) under a wall-clock limit (60 s, then its whole
  process group is killed) and an address-space limit (``RLIMIT_AS``: every array and one
  archive member the caps allow, plus 1 GiB). A crash, a timeout or running out of memory
  becomes a ``KerasFileError`` (``PortingError`` from the library's readers) naming the
  file and what happened. ``isolate=False`` reads in the calling process instead: faster,
  with the same checks, but a crash or hang in libhdf5 would then be the caller's.

Every refusal is an error naming the file, the place in it (archive member, HDF5 path,
layer) and what was expected against what was found. Writing is never done in place: a
``.weights.h5`` is built in memory (HDF5's core driver) and written with plain file I/O to
a temporary file renamed over the target (``keras_writer``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch_cnn.porting import reader
from torch_cnn.porting.reader import KerasFileContents
from torch_cnn.porting.reader_limits import DEFAULT_LIMITS, GIB, KerasFileError, Limits, readable

__all__ = ["DEFAULT_TIMEOUT", "ChildFate", "ChildRead", "read_isolated", "run_reader"]

DEFAULT_TIMEOUT = 60.0  # seconds; the zoo's files take milliseconds
READER = Path(reader.__file__).resolve()
# One thread each: BLAS and OpenMP pools reserve address space the reader never uses.
_CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class ChildFate:
    """How the reader's child process ended."""

    exit_code: int | None  # None when a signal ended it
    signal: int | None
    timed_out: bool
    wall_s: float
    stderr: str
    peak_rss_bytes: int | None = None  # the child's own (Linux VmHWM), when it could say


def default_memory(limits: Limits) -> int:
    """The child's address-space limit: every array and one archive member, plus 1 GiB."""
    return limits.total_bytes + limits.member_bytes + GIB


@dataclass(frozen=True)
class ChildRead:
    """What the child read (or the error it refused the file with) and how it ended."""

    contents: KerasFileContents | None
    error: KerasFileError | None
    fate: ChildFate


def read_isolated(
    path: str | os.PathLike[str],
    *,
    config: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float = DEFAULT_TIMEOUT,
    memory_bytes: int | None = None,
) -> KerasFileContents:
    """``reader.read`` in a child process: a crash, hang or memory blow-up is an error here.

    ``memory_bytes`` caps the child's address space (default ``default_memory(limits)``).
    For example::

        contents = read_isolated("downloaded.keras")
    """
    result = run_reader(
        path, config=config, limits=limits, timeout=timeout, memory_bytes=memory_bytes
    )
    if result.error is not None:
        raise result.error
    assert result.contents is not None
    return result.contents


def run_reader(
    path: str | os.PathLike[str],
    *,
    config: dict[str, Any] | None = None,
    limits: Limits = DEFAULT_LIMITS,
    timeout: float = DEFAULT_TIMEOUT,
    memory_bytes: int | None = None,
) -> ChildRead:
    """``read_isolated``'s work, returning the contents or the error with the child's fate."""
    where = os.fspath(path)
    memory = memory_bytes if memory_bytes is not None else default_memory(limits)
    with tempfile.TemporaryDirectory(prefix="torch_cnn_reader_") as tmp:  # mode 0700
        request, result = os.path.join(tmp, "request.json"), os.path.join(tmp, "result.npz")
        with open(request, "w", encoding="utf-8") as fh:
            json.dump(
                {"path": where, "config": config, "limits": asdict(limits), "result": result,
                 "memory_bytes": memory},
                fh,
            )  # fmt: skip
        no_plugins = os.path.join(tmp, "no-plugins")  # HDF5 finds no filter plugin to load
        os.mkdir(no_plugins)
        env = {**os.environ, **_CHILD_ENV, "HDF5_PLUGIN_PATH": no_plugins}
        fate = run_child([sys.executable, str(READER), "--request", request], timeout, env, tmp)
        failure = _failure(fate, where, timeout, memory)
        if failure is None and not os.path.isfile(result):
            failure = KerasFileError(f"{where}: the reader process ended without an answer")
        if failure is not None:
            return ChildRead(None, failure, fate)
        meta, arrays = reader.load_result(result)
    fate = replace(fate, peak_rss_bytes=meta.pop("peak_rss_bytes", None))
    if "error" in meta:
        message = str(meta["error"])
        if "ran out of memory" in message:
            message += f" (the reader's limit: {readable(memory)})"
        return ChildRead(None, KerasFileError(message), fate)
    contents = reader.decode(meta, arrays)
    contents.path = where
    return ChildRead(contents, None, fate)


def _failure(fate: ChildFate, where: str, timeout: float, memory: int) -> KerasFileError | None:
    if fate.timed_out:
        return KerasFileError(
            f"{where}: reading it took longer than {timeout:g} s and was stopped; the file is "
            "damaged or hostile"
        )
    if fate.signal is not None:
        name = signal.Signals(fate.signal).name if fate.signal in signal.valid_signals() else ""
        what = "killed" if fate.signal == signal.SIGKILL else "crashed"
        return KerasFileError(
            f"{where}: the reader (HDF5, zlib or NumPy native code) {what} ({name or fate.signal}) "
            f"reading it (memory limit {readable(memory)}); the file is damaged or hostile"
        )
    if fate.exit_code != 0:
        tail = fate.stderr.strip().splitlines()[-1:] or ["no message"]
        return KerasFileError(
            f"{where}: the reader process failed (exit status {fate.exit_code}): {tail[0]}"
        )
    return None


def run_child(args: list[str], timeout: float, env: dict[str, str], tmp: str) -> ChildFate:
    """Run ``args`` in its own process group; kill the group at ``timeout`` seconds."""
    start = time.monotonic()
    with open(os.path.join(tmp, "stderr.txt"), "w+b") as err:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
            start_new_session=True, close_fds=True,
        )  # fmt: skip
        timed_out, delay = False, 0.001
        while True:
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status = os.waitpid(proc.pid, 0)
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        stderr = err.read()[-4096:].decode("utf-8", "replace")
    signaled = os.WIFSIGNALED(status)
    return ChildFate(
        exit_code=None if signaled else os.WEXITSTATUS(status),
        signal=os.WTERMSIG(status) if signaled else None,
        timed_out=timed_out,
        wall_s=time.monotonic() - start,
        stderr=stderr,
    )
