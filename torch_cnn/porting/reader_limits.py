"""What the Keras file reader refuses before reading: its error, its caps and their bookkeeping.

Part of the standalone reader (``reader.py``): the standard library and NumPy only, so it can
run in a child process that never imports torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


class KerasFileError(ValueError):
    """A Keras file that cannot be read: damaged, hostile, over a cap, or not Keras.

    The message names the file, the place inside it (archive member, HDF5 path, layer) and
    what was expected against what was found.
    """


@dataclass(frozen=True)
class Limits:
    """Caps checked against what a file *declares*, before anything is read or inflated.

    Real weights are megabytes (the seed models < 1 MB, VGG16 528 MB with one 392 MiB
    kernel); the caps leave room for such models and stop bombs long before memory runs out.
    """

    array_bytes: int = 1 * GIB  # one weight array
    total_bytes: int = 4 * GIB  # all arrays of a file together
    member_bytes: int = 4 * GIB  # one archive member, inflated
    member_ratio: int = 100  # inflated / compressed, for members above ratio_floor
    ratio_floor: int = 1 * MIB
    config_bytes: int = 64 * MIB  # config.json, model_config, a shard index, metadata
    json_depth: int = 100  # Keras configs nest ~20 deep (nested models, layer configs)
    stored_ratio: int = 100  # an HDF5 dataset's declared / stored bytes, above stored_floor
    stored_floor: int = 64 * KIB
    max_layers: int = 10_000  # layers of a config or a weights file (EfficientNetB7: 813)
    max_objects: int = 200_000  # HDF5 groups, datasets and links; archive members; npz variables
    max_depth: int = 64  # HDF5 group nesting


DEFAULT_LIMITS = Limits()


def readable(nbytes: float) -> str:
    """``1536`` → ``"1.5 KiB"``: sizes in messages."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(nbytes) < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


@dataclass
class Budget:
    """What one read has used so far, against its ``Limits``."""

    limits: Limits
    where: str  # the file, named in every message
    array_bytes: int = 0
    objects: int = 0
    nonfinite: list[str] = field(default_factory=list)

    def fail(self, place: str, problem: str) -> KerasFileError:
        return KerasFileError(
            f"{self.where}: {place}: {problem}" if place else f"{self.where}: {problem}"
        )

    def count(self, place: str, n: int = 1) -> None:
        """``n`` more HDF5 objects, archive members or npz variables."""
        self.objects += n
        if self.objects > self.limits.max_objects:
            raise self.fail(place, f"more than {self.limits.max_objects} objects; refused")

    def claim_array(self, place: str, shape: tuple[int, ...], itemsize: int) -> int:
        """Account for an array of ``shape`` before it is allocated; its size in bytes."""
        if any(d < 0 for d in shape):
            raise self.fail(place, f"declares a negative dimension {shape}")
        nbytes = math.prod(shape) * itemsize
        if nbytes > self.limits.array_bytes:
            raise self.fail(
                place,
                f"declares shape {shape} ({readable(nbytes)}); at most "
                f"{readable(self.limits.array_bytes)} per array is read",
            )
        if self.array_bytes + nbytes > self.limits.total_bytes:
            raise self.fail(
                place,
                f"the arrays read so far and this one need {readable(self.array_bytes + nbytes)}; "
                f"at most {readable(self.limits.total_bytes)} per file is read",
            )
        self.array_bytes += nbytes
        return nbytes

    def note_nonfinite(self, place: str, array: np.ndarray) -> None:
        """Record where NaN or Inf values are (allowed; the callers warn)."""
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            self.nonfinite.append(place)


def parse_json(data: bytes | str, budget: Budget, place: str) -> Any:
    """JSON of at most ``config_bytes``, nested at most ``json_depth`` deep."""
    limits = budget.limits
    if len(data) > limits.config_bytes:
        raise budget.fail(
            place, f"{readable(len(data))} of JSON; at most {readable(limits.config_bytes)} is read"
        )
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(text)
    except RecursionError:
        raise budget.fail(place, "JSON nested too deeply to parse") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise budget.fail(place, f"not valid JSON ({type(exc).__name__}: {exc})") from None
    _check_depth(value, budget, place)
    return value


def _check_depth(value: Any, budget: Budget, place: str) -> None:
    """Iteratively, so a deep document cannot exhaust the stack here either."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > budget.limits.json_depth:
            raise budget.fail(
                place, f"JSON nested more than {budget.limits.json_depth} levels deep; refused"
            )
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
