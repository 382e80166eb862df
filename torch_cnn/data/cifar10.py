"""Reading CIFAR-10's python batches safely: a restricted unpickler, then checks on every field.

``load_cifar10`` returns uint8 NCHW tensors held whole in memory (no per-sample loader,
as in airbench); any number of images per batch, so the full dataset and a sample read
the same way.

The batches are pickles, and a data directory is something users copy between machines,
so nothing in one may run code, exhaust memory, hang or change the result silently:

- files are checked before they are read (``files.data_file_sizes``: regular files only,
  within ``MAX_BATCH_BYTES`` each and ``MAX_DATA_BYTES`` in all);
- they are unpickled by ``torch_cnn._safe_pickle``: only numpy's array reconstruction
  is allowed, an array exists only with its bytes in the file (so a batch can never
  claim more images than its size holds: N x 3,072 bytes <= file size), and opcodes are
  capped in proportion to the file's size (a label and a file name per image);
- every field is then checked: ``b'data'`` uint8 ``(N, 3072)``, ``b'labels'`` N Python
  ints (or an integer array) in 0..9 -- a float, a bool, -100 (which torch's
  ``cross_entropy`` would skip silently) or a huge int is refused with its index --, the
  ten class names UTF-8 text;
- a split with no images at all is refused here, not by a ``ZeroDivisionError`` later.

Every problem raises a ``Cifar10Error`` naming the file and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_cnn import _safe_pickle
from torch_cnn.data.files import (
    IMAGE_SHAPE,
    MAX_BATCH_BYTES,
    MAX_META_BYTES,
    META_FILE,
    NUM_CLASSES,
    ROW_SIZE,
    TEST_FILE,
    TRAIN_FILES,
    Cifar10FileError,
    Cifar10FormatError,
    StrPath,
    data_file_sizes,
    open_data_file,
    resolve_data_dir,
)

# torch's cross_entropy skips targets equal to its ignore_index (-100) without a word.
_TORCH_IGNORE_INDEX = -100


def _limits(size: int) -> _safe_pickle.PickleLimits:
    """What a batch of ``size`` bytes may claim: a real batch needs ~3 opcodes per image (a
    label, a file name and its memo entry) and one dict of lists; arrays no more bytes than
    the file holds (the unpickler's own rule)."""
    return _safe_pickle.PickleLimits(
        max_ops=8 * (size // ROW_SIZE) + 10_000,
        max_array_bytes=MAX_BATCH_BYTES,
        max_depth=8,
    )


def _unpickle(path: Path, max_bytes: int = MAX_BATCH_BYTES) -> object:
    file, size = open_data_file(path, max_bytes)
    with file:
        try:
            return _safe_pickle.load(file, size, limits=_limits(size), encoding="bytes")
        except _safe_pickle.RefusedGlobalError as exc:
            raise Cifar10FormatError(
                f"{path}: refusing to unpickle {exc.name} ({exc}); a CIFAR-10 batch holds only "
                f"dicts, lists, bytes, str, ints and numpy arrays"
            ) from exc
        except _safe_pickle.PickleLimitError as exc:
            raise Cifar10FormatError(f"{path}: refusing to unpickle it: {exc}") from exc
        except _safe_pickle.SafePickleError as exc:
            raise Cifar10FormatError(f"{path}: truncated or corrupt pickle ({exc})") from exc
        except OSError as exc:
            raise Cifar10FileError(f"{path}: could not be read ({exc})") from exc


def _as_bytes_keys(path: Path, obj: object) -> dict[bytes, Any]:
    if not isinstance(obj, dict):
        raise Cifar10FormatError(f"{path}: expected a pickled dict; received {type(obj).__name__}")
    # Batches re-pickled by Python 3 come back with str keys; the originals have bytes keys.
    out: dict[bytes, Any] = {}
    for k, v in obj.items():
        key = k.encode("utf-8", "surrogatepass") if isinstance(k, str) else k
        if key in out:
            raise Cifar10FormatError(f"{path}: holds the key {_safe_pickle.describe(key)} twice")
        out[key] = v
    return out


def _keys(batch: dict[bytes, Any]) -> str:
    shown = sorted(_safe_pickle.describe(k) for k in list(batch)[:20])
    return "[" + ", ".join(shown) + (", ..." if len(batch) > 20 else "") + "]"


def _check_labels(path: Path, raw: object, n: int) -> np.ndarray[Any, Any]:
    """N labels as int64, each an int in 0..9 (not a bool, float or -100), else the first bad one named."""
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise Cifar10FormatError(
                f"{path}: b'labels' must be a list of ints; received {raw.dtype} array of shape "
                f"{raw.shape}"
            )
        values: list[Any] = raw.tolist()
    elif type(raw) is list:
        values = raw
    else:
        raise Cifar10FormatError(
            f"{path}: b'labels' must be a list of ints; received {_safe_pickle.describe(raw)}"
        )
    if len(values) != n:
        raise Cifar10FormatError(f"{path}: {len(values)} labels for {n} images in b'data'")
    for i, v in enumerate(values):
        if type(v) is not int:  # bool, float, str, ...: never truncated or cast
            raise Cifar10FormatError(
                f"{path}: b'labels' must be a list of ints; received "
                f"{_safe_pickle.describe(v)} at index {i}"
            )
        if not 0 <= v < NUM_CLASSES:
            bad = sum(1 for u in values if type(u) is int and not 0 <= u < NUM_CLASSES)
            note = (
                " (torch's cross_entropy would skip it silently as ignore_index)"
                if v == _TORCH_IGNORE_INDEX
                else ""
            )
            raise Cifar10FormatError(
                f"{path}: labels must lie in 0..{NUM_CLASSES - 1}; received "
                f"{_safe_pickle.describe(v)} at index {i} ({bad} out of range){note}"
            )
    return np.array(values, dtype=np.int64)


def _read_batch(path: Path) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(data (N, 3072) uint8, labels (N,) int64)`` of one batch file, validated."""
    batch = _as_bytes_keys(path, _unpickle(path))
    if b"data" not in batch or b"labels" not in batch:
        raise Cifar10FormatError(
            f"{path}: expected keys b'data' and b'labels'; received {_keys(batch)}"
        )
    data = batch[b"data"]
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == ROW_SIZE
    ):
        raise Cifar10FormatError(
            f"{path}: b'data' must be a uint8 array of shape (N, {ROW_SIZE}); received "
            f"{_safe_pickle.describe(data)}"
        )
    return data, _check_labels(path, batch[b"labels"], data.shape[0])


def _read_classes(path: Path) -> list[str]:
    meta = _as_bytes_keys(path, _unpickle(path, MAX_META_BYTES))
    names = meta.get(b"label_names")
    if type(names) is not list:
        raise Cifar10FormatError(
            f"{path}: expected b'label_names', a list of {NUM_CLASSES} names; "
            f"received keys {_keys(meta)}"
        )
    if len(names) != NUM_CLASSES:
        raise Cifar10FormatError(f"{path}: {len(names)} label_names; expected {NUM_CLASSES}")
    classes = []
    for i, name in enumerate(names):
        try:
            text = name.decode("utf-8") if type(name) is bytes else name
            if type(text) is not str:
                raise TypeError
            text.encode("utf-8")  # no lone surrogates: the names get printed
        except (UnicodeError, TypeError):
            raise Cifar10FormatError(
                f"{path}: label_names[{i}] must be UTF-8 text; received "
                f"{_safe_pickle.describe(name)}"
            ) from None
        if not text or not text.isprintable():
            raise Cifar10FormatError(
                f"{path}: label_names[{i}] must be non-empty printable text; received {text[:40]!r}"
            )
        classes.append(text)
    return classes


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
        # -100 would be skipped silently by cross_entropy; anything else out of range crashes late.
        bad = torch.nonzero((self.labels < 0) | (self.labels >= NUM_CLASSES))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"Split labels must lie in 0..{NUM_CLASSES - 1}; received "
                f"{int(self.labels[i])} at index {i} ({len(bad)} out of range)"
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


def _load_split(root: Path, files: Sequence[str], what: str) -> Split:
    parts = [_read_batch(root / name) for name in files]
    if not sum(len(y) for _, y in parts):
        raise Cifar10FormatError(f"no {what} images in {root}: {', '.join(files)} hold 0 images")
    data = np.concatenate([d for d, _ in parts])  # a fresh writable copy, (N, 3072)
    labels = np.concatenate([y for _, y in parts])
    images = torch.from_numpy(data).reshape(-1, *IMAGE_SHAPE)  # row layout is already C, H, W
    return Split(images, torch.from_numpy(labels))


def load_cifar10(data_dir: StrPath | None = None, *, download: bool = True) -> Cifar10:
    """Read CIFAR-10 from its python-batch files (any number of images per batch).

    ``data_dir`` goes through ``resolve_data_dir`` (so ``None`` means ``CIFAR10_DIR`` or the
    cache). The files are checked (regular files within the caps) before any is read, then
    unpickled by a restricted unpickler that builds only the types a batch holds, with no
    array bigger than its bytes in the file; every problem raises a ``Cifar10Error`` naming
    the file and what was expected (see the module docstring).

    >>> import os
    >>> if os.environ.get("CIFAR10_DIR"):
    ...     ds = load_cifar10(os.environ["CIFAR10_DIR"])
    ...     assert ds.classes[0] == "airplane" and ds.train.images.shape[1:] == (3, 32, 32)
    """
    root = resolve_data_dir(data_dir, download=download)
    data_file_sizes(root)  # every file's kind and size, before any is read
    return Cifar10(
        train=_load_split(root, TRAIN_FILES, "training"),
        test=_load_split(root, (TEST_FILE,), "test"),
        classes=_read_classes(root / META_FILE),
    )
