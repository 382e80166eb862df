"""What both sides of the benchmark share: the record schema, throughput statistics, the RSS
probes, atomic writes, the run's sizes.

Standard library only: the Keras process (``benchmarks.keras_side``) imports this module and
must import neither torch nor torch_cnn (it also runs Keras on its torch backend, which must
have its process to itself).
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

# Every record ``torch-cnn bench --json`` writes has at least these keys.
RECORD_KEYS = (
    "framework",
    "mode",
    "model",
    "task",
    "batch_size",
    "device",
    "images_per_s",
    "images_per_s_min",
    "images_per_s_max",
    "peak_memory_mb",
)
# What identifies a row across the rounds of a run (``merge_rounds``).
ROW_KEYS = ("framework", "mode", "model", "task", "batch_size")
TASKS = ("train", "infer", "latency")
KERAS_BACKENDS = {"keras_tensorflow": "tensorflow", "keras_torch": "torch"}
KERAS_MODES = {"tensorflow": ("default", "xla", "multistep"), "torch": ("default",)}
# Batch-1 latency on Keras: its two ways of running one batch (``predict`` adds a data
# adapter and callbacks around the same compiled function).
KERAS_LATENCY_CALLS = ("predict_on_batch", "model(x)")
FRAMEWORKS = ("torch_cnn", *KERAS_BACKENDS, "onnxruntime")
DEVICES = ("cpu", "cuda")
# The large batch for training and inference, per device type. On CUDA it divides CIFAR-10's
# 50,000 training images, so a repeat is exactly one epoch.
LARGE_BATCH = {"cpu": 256, "cuda": 500}
# Images per timed repeat: on CUDA one CIFAR-10 training epoch (the 50 ms target).
IMAGES_PER_REPEAT = {"cpu": 4096, "cuda": 50_000}
REPEATS = 5
WARMUP_STEPS = 5
# A --quick run: seconds, not minutes (for the smoke test, not for numbers).
QUICK = {"images": 128, "repeats": 2, "warmup_steps": 1, "large_batch": 64}
MB = 1 << 20
# Batch-1 latency: each repeat is the median of this many calls (fewer for a slow call, so
# that a repeat takes about LATENCY_REPEAT_S; at least LATENCY_MIN_CALLS).
LATENCY_CALLS = 400
LATENCY_MIN_CALLS = 20
LATENCY_REPEAT_S = 0.5


def throughput(seconds: Sequence[float], images: int) -> dict[str, float]:
    """Median, min and max images/s over repeats that each processed ``images`` images.

    >>> throughput([1.0, 2.0, 0.5], 100)
    {'images_per_s': 100.0, 'images_per_s_min': 50.0, 'images_per_s_max': 200.0}
    """
    if not seconds or min(seconds) <= 0:
        raise ValueError(f"need positive repeat times; received {list(seconds)}")
    rates = sorted(images / s for s in seconds)
    return {
        "images_per_s": statistics.median(rates),
        "images_per_s_min": rates[0],
        "images_per_s_max": rates[-1],
    }


def latency_calls(first_call_s: float, fixed: int = 0) -> int:
    """How many calls a batch-1 latency repeat makes, from a warm call's seconds (or ``fixed``).

    >>> latency_calls(100e-6), latency_calls(0.015), latency_calls(2.0), latency_calls(1e-4, 5)
    (400, 33, 20, 5)
    """
    if fixed:
        return fixed
    fit = int(LATENCY_REPEAT_S / max(first_call_s, 1e-9))
    return max(LATENCY_MIN_CALLS, min(LATENCY_CALLS, fit))


def median_call_s(call: Callable[[], object], calls: int) -> float:
    """The median wall time of ``calls`` calls of ``call`` (one latency repeat), in seconds."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row_key(rec: Mapping[str, Any]) -> tuple[Any, ...]:
    """The fields that name a row: ``ROW_KEYS``' values."""
    return tuple(rec[k] for k in ROW_KEYS)


def merge_rounds(rounds: Sequence[Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One record per row from the records of interleaved rounds (one repeat or more each).

    The repeat times are concatenated in round order and the statistics recomputed;
    ``compile_s`` and ``warmup_s`` are the first round's (later rounds warm up again in a
    fresh process), the peak memory the highest, ``max_abs_diff`` the largest. Rows keep the
    order in which they first appear.

    >>> a = {"framework": "f", "mode": "m", "model": "x", "task": "infer", "batch_size": 2,
    ...      "seconds": [2.0], "images_per_repeat": 4, "peak_memory_mb": 10.0, "compile_s": 1.0}
    >>> b = dict(a, seconds=[1.0], peak_memory_mb=12.0, compile_s=0.5)
    >>> m = merge_rounds([[a], [b]])[0]
    >>> m["seconds"], m["images_per_s"], m["peak_memory_mb"], m["compile_s"], m["rounds"]
    ([2.0, 1.0], 3.0, 12.0, 1.0, 2)
    """
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    for records in rounds:
        for rec in records:
            key = row_key(rec)
            if key not in merged:
                merged[key] = dict(rec, seconds=list(rec["seconds"]), rounds=1)
                continue
            m = merged[key]
            m["seconds"] += rec["seconds"]
            m["rounds"] += 1
            m["peak_memory_mb"] = max(m["peak_memory_mb"], rec["peak_memory_mb"])
            if "max_abs_diff" in rec:
                m["max_abs_diff"] = max(m.get("max_abs_diff", 0.0), rec["max_abs_diff"])
    for m in merged.values():
        m.update(throughput(m["seconds"], m["images_per_repeat"]))
        m["repeats"] = len(m["seconds"])
        if m["task"] == "latency":
            m.update(latency_stats(m["seconds"]))
    return list(merged.values())


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Median, min and max µs per call over latency repeats (each a median of many calls).

    >>> latency_stats([0.001, 0.002, 0.0005])
    {'latency_us': 1000.0, 'latency_us_min': 500.0, 'latency_us_max': 2000.0}
    """
    us = sorted(1e6 * s for s in seconds)
    return {
        "latency_us": round(statistics.median(us), 3),
        "latency_us_min": round(us[0], 3),
        "latency_us_max": round(us[-1], 3),
    }


def _status_kb(field: str) -> float | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def rss_mb() -> float:
    """The process's resident set size now, in MiB (0.0 where ``/proc`` is missing)."""
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else 0.0


class PeakRSS:
    """The process's peak resident set size over a stretch of code, in MiB.

    On Linux ``reset()`` writes ``5`` to ``/proc/self/clear_refs``, which resets the
    high-water mark ``VmHWM`` to the current RSS, so ``peak_mb()`` is the peak since the
    reset (``kind == "rss_peak"``). Elsewhere it falls back to ``getrusage``'s ``ru_maxrss``,
    the peak over the process's whole life (``kind == "rss_lifetime_peak"``).
    """

    def __init__(self) -> None:
        self.kind = "rss_lifetime_peak"

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.kind = "rss_peak"
        except OSError:
            self.kind = "rss_lifetime_peak"

    def peak_mb(self) -> float:
        kb = _status_kb("VmHWM") if self.kind == "rss_peak" else None
        if kb is not None:
            return kb / 1024
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return maxrss / MB if sys.platform == "darwin" else maxrss / 1024  # bytes vs KiB


def record(
    *,
    framework: str,
    mode: str,
    model: str,
    task: str,
    batch_size: int,
    device: str,
    seconds: Sequence[float],
    images_per_repeat: int,
    peak_memory_mb: float,
    **extra: Any,
) -> dict[str, Any]:
    """One benchmark record: ``RECORD_KEYS`` first, then the repeat times and ``extra``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}; received task={task!r}")
    rec: dict[str, Any] = {
        "framework": framework,
        "mode": mode,
        "model": model,
        "task": task,
        "batch_size": batch_size,
        "device": device,
        **throughput(seconds, images_per_repeat),
        "peak_memory_mb": round(peak_memory_mb, 1),
        "repeats": len(seconds),
        "images_per_repeat": images_per_repeat,
        "seconds": [round(s, 9) for s in seconds],
    }
    if task == "latency":  # one image per call; each repeat is a median µs per call
        rec.update(latency_stats(seconds))
    rec.update(extra)
    return rec


def round_up(images: int, batch_size: int) -> int:
    """``images`` rounded up to whole batches: no partial batch, so no second compiled shape.

    >>> round_up(1000, 32), round_up(50_000, 500)
    (1024, 50000)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    return -(-images // batch_size) * batch_size


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, flush it to disk, rename it into place.

    What ``torch_cnn``'s ``atomic_write`` does, for processes that must not import torch: an
    exclusive create with the umask's permissions (``mkstemp`` would make the file 0600) and
    an fsync before the rename. A failed write leaves ``path`` as it was and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], obj: object) -> None:
    """``obj`` as indented JSON (no NaN or infinity: strict JSON) through ``atomic_write_text``."""
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False) + "\n")
