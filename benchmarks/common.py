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
from collections.abc import Sequence
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
KERAS_BACKENDS = {"keras_tensorflow": "tensorflow", "keras_torch": "torch"}
KERAS_MODES = {"tensorflow": ("default", "xla", "multistep"), "torch": ("default",)}
FRAMEWORKS = ("torch_cnn", *KERAS_BACKENDS)
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
    if task not in ("train", "infer"):
        raise ValueError(f"task must be 'train' or 'infer'; received task={task!r}")
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
        "seconds": [round(s, 6) for s in seconds],
    }
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
