"""What ``torch_cnn._safe_pickle`` reports and builds besides plain data.

Its errors and limits, the inert ``StandIn`` a loader maps allowed globals to, bounded
descriptions of untrusted values for messages, and the check on how deeply what it built
nests. Standard library and numpy only (no torch), like ``_safe_pickle`` itself: import the
names from there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np


class SafePickleError(ValueError):
    """The data is not a pickle of plain data that this reader rebuilds (truncated, corrupt, hostile)."""


class PickleLimitError(SafePickleError):
    """The pickle asks for something refused outright: a global, an opcode, or more than a cap."""


class RefusedGlobalError(PickleLimitError):
    """The pickle names a global outside the allowlist; ``name`` is ``module.name``."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class PickleLimits:
    """What one pickle may claim. Memory stays within about ``4 * size + 100 * max_ops`` bytes.

    ``max_ops``: opcodes read (each pushes at most one object of ~100 bytes plus its data).
    ``max_array_bytes``: bytes of one numpy array. ``max_depth``: containers (dict, list,
    tuple, object array, stand-in) nested within each other. ``allow_object_arrays``: numpy
    arrays of Python objects (Keras's ``.npz`` weights pickle one 0-d array holding a dict).
    """

    max_ops: int = 1_000_000
    max_array_bytes: int = 1 << 30
    max_depth: int = 100
    allow_object_arrays: bool = False


DEFAULT_LIMITS = PickleLimits()


class StandIn:
    """What a global a loader allows as a stand-in builds: a record of its use; nothing runs.

    A loader maps ``(module, name)`` to a subclass (``{("functools", "partial"): Partial}``)
    and the pickle gets that class in place of the real object. Calling it (``REDUCE``) or
    creating an instance of it (``NEWOBJ``) gives an instance of it with ``args``; ``BUILD``
    sets its ``state`` once; calling an instance gives a plain ``StandIn`` whose ``args`` are
    the instance, then the call's arguments. The unpickler makes them itself: nothing a
    subclass defines (``__init__``, ``__setstate__``, ``__call__``) is ever run.
    """

    __slots__ = ("args", "state")

    def __init__(self, args: tuple[Any, ...]) -> None:
        self.args: tuple[Any, ...] = args
        self.state: Any = None


class _ArrayToken:
    """What the global ``numpy.ndarray`` unpickles to: accepted by ``_reconstruct``, not callable."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


NDARRAY = _ArrayToken()


def describe(value: object, width: int = 40) -> str:
    """A short, bounded description of an untrusted value for an error message (never a full repr)."""
    if value is NDARRAY:
        return "numpy.ndarray"
    if type(value) is int:
        return str(value) if value.bit_length() <= 64 else f"an int of {value.bit_length()} bits"
    if type(value) is bool or value is None or type(value) is float:
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, str | bytes):
        text = repr(value[:width])
        return text if len(value) <= width else f"{text[:-1]}...{text[-1]} ({len(value)} long)"
    if isinstance(value, np.ndarray):
        dtype = value.dtype
        name = str(dtype) if dtype.isnative else f"{dtype.str} ({dtype})"
        return f"{name} array of shape {value.shape}"
    if type(value) is tuple and len(value) <= 32 and all(type(v) is int for v in value):
        return "(" + ", ".join(map(describe, value)) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, list | tuple | dict):
        return f"{type(value).__name__} of {len(value)}"
    return type(value).__name__


def brief(exc: BaseException, width: int = 200) -> str:
    """An exception's message, cut to ``width`` (pickle's own errors quote the data)."""
    try:
        text = str(exc)
    except Exception:  # str() of a huge int raises ValueError in 3.11
        text = "(no message)"
    return text if len(text) <= width else text[:width] + "..."


def _children(obj: object) -> Iterable[object] | None:
    """The items of a container the unpickler can build, else None."""
    kind = type(obj)
    if kind is dict:
        return obj.values()  # type: ignore[attr-defined, no-any-return]
    if kind is list or kind is tuple:
        return obj  # type: ignore[return-value]
    if kind is np.ndarray and obj.dtype.hasobject:  # type: ignore[attr-defined]
        return obj.ravel().tolist()  # type: ignore[attr-defined, no-any-return]
    if isinstance(obj, StandIn):
        return (*obj.args, obj.state)
    return None


def check_nesting(root: object, max_depth: int) -> None:
    """Refuse cycles and containers nested deeper than ``max_depth``, without recursion.

    Depth-first over the object graph, each container once (a height per id), so memoised
    structures shared a million times cost one visit each.
    """
    top = _children(root)
    if top is None:
        return
    height: dict[int, int] = {}
    path: set[int] = {id(root)}
    stack: list[tuple[object, Any, list[int]]] = [(root, iter(top), [1])]
    while stack:
        obj, items, best = stack[-1]
        for child in items:
            below = _children(child)
            if below is None:
                continue
            if id(child) in path:
                raise PickleLimitError("a container holds itself (a cycle)")
            seen = height.get(id(child))
            if seen is None:
                if len(stack) >= max_depth:
                    raise PickleLimitError(f"containers nested deeper than {max_depth}")
                path.add(id(child))
                stack.append((child, iter(below), [1]))
                break
            if len(stack) + seen > max_depth:
                raise PickleLimitError(f"containers nested deeper than {max_depth}")
            best[0] = max(best[0], seen + 1)
        else:
            stack.pop()
            path.discard(id(obj))
            height[id(obj)] = best[0]
            if stack:
                stack[-1][2][0] = max(stack[-1][2][0], best[0] + 1)
