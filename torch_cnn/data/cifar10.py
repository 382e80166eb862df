"""Reading CIFAR-10's python batches safely: a restricted Unpickler, then checks on every field.

``load_cifar10`` returns uint8 NCHW tensors held whole in memory (no per-sample loader,
as in airbench); any number of images per batch, so the full dataset and a sample read
the same way.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_cnn.data.files import (
    IMAGE_SHAPE,
    META_FILE,
    NUM_CLASSES,
    ROW_SIZE,
    TEST_FILE,
    TRAIN_FILES,
    Cifar10FormatError,
    Cifar10NotFoundError,
    StrPath,
    resolve_data_dir,
)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles bytes at protocols 0-2 as _codecs.encode(str, 'latin1'); allow only that codec.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 renamed numpy.core to numpy._core; importing the old name warns, so go to the new one.
    for candidate in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {module}.{name}")


# The globals a CIFAR-10 batch needs: numpy's array reconstruction (protocol 2 as in the real
# files; protocol 5 uses _frombuffer), and bytes written by Python 3 at protocol <= 2.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that builds dicts, lists, bytes, str, ints and numpy arrays, and nothing else.

    Plain ``pickle.load`` would call any function a file names (``os.system`` included).
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        if module == "_codecs":
            return _latin1_encode
        if module == "numpy":
            return np.ndarray if name == "ndarray" else np.dtype
        return _numpy_attr(module, name)


def _unpickle(path: Path) -> object:
    if not path.is_file():
        raise Cifar10NotFoundError(f"{path}: no such file")
    with path.open("rb") as f:
        try:
            return _RestrictedUnpickler(f, encoding="bytes").load()
        except _RefusedGlobal as exc:
            raise Cifar10FormatError(
                f"{path}: refusing to unpickle {exc}; a CIFAR-10 batch holds only dicts, lists, "
                f"bytes, str, ints and numpy arrays"
            ) from exc
        except Exception as exc:  # any failure inside pickle means a truncated or corrupt file
            raise Cifar10FormatError(
                f"{path}: truncated or corrupt pickle ({type(exc).__name__}: {exc})"
            ) from exc


def _as_bytes_keys(path: Path, obj: object) -> dict[bytes, Any]:
    if not isinstance(obj, dict):
        raise Cifar10FormatError(f"{path}: expected a pickled dict; received {type(obj).__name__}")
    # Batches re-pickled by Python 3 come back with str keys; the originals have bytes keys.
    return {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}


def _read_batch(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(data (N, 3072) uint8, labels (N,) int64)`` of one batch file, validated."""
    batch = _as_bytes_keys(path, _unpickle(path))
    if b"data" not in batch or b"labels" not in batch:
        raise Cifar10FormatError(
            f"{path}: expected keys b'data' and b'labels'; received {sorted(map(repr, batch))}"
        )
    data = batch[b"data"]
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == ROW_SIZE
    ):
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise Cifar10FormatError(
            f"{path}: b'data' must be a uint8 array of shape (N, {ROW_SIZE}); received {got}"
        )
    n = data.shape[0]
    try:
        labels = np.asarray(batch[b"labels"])
    except (TypeError, ValueError) as exc:
        raise Cifar10FormatError(f"{path}: b'labels' is not a list of ints ({exc})") from exc
    if labels.ndim != 1 or (labels.size and not np.issubdtype(labels.dtype, np.integer)):
        raise Cifar10FormatError(
            f"{path}: b'labels' must be a list of ints; received {labels.dtype} of shape {labels.shape}"
        )
    if len(labels) != n:
        raise Cifar10FormatError(f"{path}: {len(labels)} labels for {n} images in b'data'")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        i = int(bad[0])
        raise Cifar10FormatError(
            f"{path}: labels must lie in 0..{NUM_CLASSES - 1}; received {int(labels[i])} at index {i} "
            f"({bad.size} out of range)"
        )
    return data, labels.astype(np.int64)


def _read_classes(path: Path) -> list[str]:
    meta = _as_bytes_keys(path, _unpickle(path))
    names = meta.get(b"label_names")
    if not isinstance(names, list) or not all(isinstance(s, (bytes, str)) for s in names):
        raise Cifar10FormatError(
            f"{path}: expected b'label_names', a list of {NUM_CLASSES} names; "
            f"received keys {sorted(map(repr, meta))}"
        )
    if len(names) != NUM_CLASSES:
        raise Cifar10FormatError(f"{path}: {len(names)} label_names; expected {NUM_CLASSES}")
    return [s.decode() if isinstance(s, bytes) else s for s in names]


@dataclass(frozen=True)
class Split:
    """Images ``(N, 3, 32, 32)`` uint8 NCHW and labels ``(N,)`` int64 in ``0..9``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or tuple(self.images.shape[1:]) != IMAGE_SHAPE:
            raise ValueError(
                f"Split images must be uint8 (N, 3, 32, 32); received {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"Split labels must be int64 ({len(self.images)},); received {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> Split:
        """The split with both tensors on ``device`` (the whole dataset fits on any GPU)."""
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Cifar10:
    """The CIFAR-10 train and test splits and the class names (``airplane`` first)."""

    train: Split
    test: Split
    classes: list[str]

    def to(self, device: torch.device | str) -> Cifar10:
        return Cifar10(self.train.to(device), self.test.to(device), list(self.classes))


def _load_split(root: Path, files: Sequence[str]) -> Split:
    parts = [_read_batch(root / name) for name in files]
    data = np.concatenate([d for d, _ in parts])  # a fresh writable copy, (N, 3072)
    labels = np.concatenate([y for _, y in parts])
    images = torch.from_numpy(data).reshape(-1, *IMAGE_SHAPE)  # row layout is already C, H, W
    return Split(images, torch.from_numpy(labels))


def load_cifar10(data_dir: StrPath | None = None, *, download: bool = True) -> Cifar10:
    """Read CIFAR-10 from its python-batch files (any number of images per batch).

    ``data_dir`` goes through ``resolve_data_dir`` (so ``None`` means ``CIFAR10_DIR`` or the
    cache). Files are unpickled with a restricted Unpickler that builds only the types a batch
    holds; every problem raises a ``Cifar10Error`` naming the file.

    >>> import os
    >>> if os.environ.get("CIFAR10_DIR"):
    ...     ds = load_cifar10(os.environ["CIFAR10_DIR"])
    ...     assert ds.classes[0] == "airplane" and ds.train.images.shape[1:] == (3, 32, 32)
    """
    root = resolve_data_dir(data_dir, download=download)
    return Cifar10(
        train=_load_split(root, TRAIN_FILES),
        test=_load_split(root, (TEST_FILE,)),
        classes=_read_classes(root / META_FILE),
    )
