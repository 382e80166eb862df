"""CIFAR-10 from its python-batch files, held whole as tensors, batched and augmented on the device.

No torchvision and no per-sample loader (as in airbench): ``load_cifar10`` returns
uint8 NCHW tensors, ``iterate_batches`` slices them in a seeded order, and
``Augment`` crops and flips whole batches with tensor ops.

>>> import torch
>>> from torch_cnn import data
>>> x = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
>>> y = torch.arange(10)
>>> g = torch.Generator().manual_seed(0)
>>> [len(yb) for _, yb in data.iterate_batches(x, y, 4, generator=g)]
[4, 4, 2]
>>> data.to_float(torch.tensor([0, 255], dtype=torch.uint8))
tensor([0., 1.])

The files come from ``resolve_data_dir``: an explicit directory, else ``CIFAR10_DIR``,
else a cache directory that is filled by downloading the official tarball.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch
import torch.nn.functional as F

StrPath = str | os.PathLike[str]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIRNAME = "cifar-10-batches-py"
# Keras and the seeds scale by 255 (seed 001's `/225.0` on the test split is a typo, not copied).
PIXEL_SCALE = 255.0

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
REQUIRED_FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
ROW_SIZE = 3 * 32 * 32  # one image per row: 1,024 red, 1,024 green, 1,024 blue, rows of 32 pixels

_DOWNLOAD_CHUNK = 1 << 20


class Cifar10Error(Exception):
    """Base of the errors this module raises about CIFAR-10 files."""


class Cifar10FormatError(Cifar10Error, ValueError):
    """A file is there but is not a valid CIFAR-10 python batch (or archive)."""


class Cifar10NotFoundError(Cifar10Error, FileNotFoundError):
    """The CIFAR-10 files are not where they were looked for and could not be downloaded."""


# ---------------------------------------------------------------------------------------------
# Finding (and fetching) the files


def default_cache_dir() -> Path:
    """``$TORCH_CNN_CACHE``, else ``$XDG_CACHE_HOME/torch_cnn``, else ``~/.cache/torch_cnn``."""
    if value := os.environ.get("TORCH_CNN_CACHE"):
        return Path(value).expanduser()
    if value := os.environ.get("XDG_CACHE_HOME"):
        return Path(value).expanduser() / "torch_cnn"
    return Path.home() / ".cache" / "torch_cnn"


def missing_files(directory: StrPath) -> list[str]:
    """Which of ``REQUIRED_FILES`` ``directory`` lacks (all of them if it does not exist)."""
    directory = Path(directory)
    return [name for name in REQUIRED_FILES if not (directory / name).is_file()]


def resolve_data_dir(
    data_dir: StrPath | None = None,
    *,
    download: bool = True,
    cache_dir: StrPath | None = None,
) -> Path:
    """The directory holding ``data_batch_1`` … ``data_batch_5``, ``test_batch`` and ``batches.meta``.

    Looks at ``data_dir``, else ``$CIFAR10_DIR``, else ``<cache>/cifar-10-batches-py`` (see
    ``default_cache_dir``; ``cache_dir`` overrides it). Only the cache is ever filled by a download:
    an explicit or ``CIFAR10_DIR`` directory that lacks files is an error naming it. A directory
    that holds ``cifar-10-batches-py/`` (where the tarball was extracted) is accepted too.

    >>> import os, tempfile
    >>> empty = tempfile.mkdtemp()
    >>> resolve_data_dir(empty)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    torch_cnn.data.Cifar10NotFoundError: CIFAR-10 directory ... lacks data_batch_1, ...
    """
    if data_dir is not None:
        return _check_given_dir(Path(data_dir), "CIFAR-10 directory")
    if env := os.environ.get("CIFAR10_DIR"):
        return _check_given_dir(Path(env), "CIFAR10_DIR")

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / CIFAR10_DIRNAME
    if not missing_files(target):
        return target
    if not download:
        raise Cifar10NotFoundError(
            f"CIFAR-10 is not in the cache {target} (lacks {', '.join(missing_files(target))}) "
            f"and download=False. {_where_to_put(target)}"
        )
    download_cifar10(cache)
    return target


def _check_given_dir(path: Path, what: str) -> Path:
    path = path.expanduser()
    missing = missing_files(path)
    if not missing:
        return path
    # Accept the directory the tarball was extracted into, not only the batch folder itself.
    if not missing_files(path / CIFAR10_DIRNAME):
        return path / CIFAR10_DIRNAME
    if not path.is_dir():
        raise Cifar10NotFoundError(f"{what} {path} does not exist (or is not a directory)")
    raise Cifar10NotFoundError(
        f"{what} {path} lacks {', '.join(missing)}; expected all of {', '.join(REQUIRED_FILES)}"
    )


def _where_to_put(target: Path) -> str:
    return (
        f"Download {CIFAR10_URL} (md5 {CIFAR10_MD5}) and extract it so that {target}/data_batch_1 "
        f"exists, or point CIFAR10_DIR (or --data-dir) at a directory holding "
        f"{', '.join(REQUIRED_FILES)}."
    )


def download_cifar10(
    cache_dir: StrPath,
    *,
    url: str | None = None,
    md5: str | None = None,
    progress: bool = True,
) -> Path:
    """Download the CIFAR-10 tarball into ``cache_dir``, check its md5, extract it; returns the batch dir.

    Atomic: the tarball is written to a temporary file and renamed only once its md5
    matches (a wrong one is deleted and raises ``Cifar10FormatError``), and extracted files are
    renamed into ``cache_dir/cifar-10-batches-py`` one by one. A tarball already in the cache
    with the right md5 is reused. ``url``/``md5`` default to ``CIFAR10_URL``/``CIFAR10_MD5``.
    """
    url = CIFAR10_URL if url is None else url
    md5 = CIFAR10_MD5 if md5 is None else md5
    cache = Path(cache_dir).expanduser()
    target = cache / CIFAR10_DIRNAME
    archive = cache / CIFAR10_ARCHIVE
    cache.mkdir(parents=True, exist_ok=True)

    if not (archive.is_file() and _md5_of_file(archive) == md5):
        _download(url, archive, md5, target, progress=progress)
    extract_tarball(archive, cache)
    if missing := missing_files(target):
        raise Cifar10FormatError(
            f"{archive} (from {url}) extracted without {', '.join(missing)} in {target}"
        )
    return target


def _download(url: str, archive: Path, md5: str, target: Path, *, progress: bool) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".part", dir=archive.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    digest = _copy_with_progress(response, out, total, progress, url)
            except (urllib.error.URLError, OSError) as exc:
                raise Cifar10NotFoundError(
                    f"CIFAR-10 is not in {target} and could not be downloaded from {url} ({exc}). "
                    f"{_where_to_put(target)}"
                ) from exc
        if digest != md5:
            raise Cifar10FormatError(
                f"download from {url} has md5 {digest}, expected {md5}; deleted the bad file"
            )
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_with_progress(
    src: IO[bytes], dst: IO[bytes], total: int | None, progress: bool, url: str
) -> str:
    """Copy ``src`` to ``dst`` in chunks, hashing as it goes; tqdm reports progress when present."""
    digest = hashlib.md5(usedforsecurity=False)
    bar: Any = None
    if progress:
        try:
            from tqdm.auto import tqdm
        except (
            ImportError
        ):  # tqdm is a dependency, but a missing progress bar must not stop a download
            pass
        else:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1])
    try:
        while chunk := src.read(_DOWNLOAD_CHUNK):
            dst.write(chunk)
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return digest.hexdigest()


def _md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def extract_tarball(archive: StrPath, dest: StrPath) -> None:
    """Extract the regular files and directories of ``archive`` under ``dest``, refusing unsafe members.

    A member with an absolute path, a ``..`` component, or of another kind (link, device,
    fifo) raises ``Cifar10FormatError`` before anything is written. Files are extracted to a
    temporary directory inside ``dest`` and then renamed into place one by one.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or PurePosixPath(m.name).is_absolute():
                    raise Cifar10FormatError(
                        f"{archive}: refusing member with absolute path {m.name!r}"
                    )
                if ".." in parts or any(":" in p or "\\" in p for p in parts):
                    raise Cifar10FormatError(
                        f"{archive}: refusing member outside the archive {m.name!r}"
                    )
                if not (m.isfile() or m.isdir()):
                    raise Cifar10FormatError(
                        f"{archive}: refusing member {m.name!r}: only regular files and directories"
                    )
            dest.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest))
            try:
                written: list[PurePosixPath] = []
                for m in members:
                    rel = PurePosixPath(m.name)
                    if m.isdir():
                        (staging / rel).mkdir(parents=True, exist_ok=True)
                        continue
                    src = tar.extractfile(m)
                    if src is None:  # pragma: no cover - isfile() members always have data
                        continue
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    with src, (staging / rel).open("wb") as out:
                        shutil.copyfileobj(src, out)
                    written.append(rel)
                for rel in written:
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / rel, dest / rel)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError) as exc:
        raise Cifar10FormatError(f"{archive}: not a readable tar archive ({exc})") from exc


# ---------------------------------------------------------------------------------------------
# Reading the batches


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


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images to ``dtype`` in [0, 1]: ``images / 255``, as Keras's ``astype("float32") / 255.0``.

    Divides (not multiplies by 1/255) so float32 results match NumPy's bit for bit.

    >>> to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
    tensor([0.0000, 0.2000, 1.0000])
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images; received {images.dtype}")
    return images.to(dtype) / PIXEL_SCALE


# ---------------------------------------------------------------------------------------------
# Batching and augmentation on the device


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Batches per epoch: ``ceil(n / batch_size)`` as Keras ``fit`` (``floor`` with ``drop_last``).

    >>> num_batches(10, 4), num_batches(10, 4, drop_last=True)
    (3, 2)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    if n < 0:
        raise ValueError(f"n must be non-negative; received n={n}")
    return n // batch_size if drop_last else -(-n // batch_size)


def _cpu_generator(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"pass a CPU torch.Generator (random numbers are drawn on the CPU so CPU and CUDA "
            f"runs agree); received one on {generator.device}"
        )


def shift_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and crop it back to size at per-image ``offsets``.

    ``offsets`` is ``(N, 2)`` integer ``(dy, dx)`` in ``0..2*padding``; ``(padding, padding)``
    returns the image unchanged. One gather for the whole batch, no per-image loop.

    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> shift_crop(x, torch.tensor([[0, 0]]), 1)
    tensor([[[[0., 0.],
              [0., 0.]]]])
    >>> shift_crop(x, torch.tensor([[2, 2]]), 1)
    tensor([[[[3., 0.],
              [0., 0.]]]])
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, C, H+2p, W+2p)
    offsets = offsets.to(images.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding and random horizontal flip, on whole batches.

    The random numbers come from a CPU ``torch.Generator`` (then move to the images' device),
    so a seed gives the same augmentation on CPU and CUDA. Works on uint8 or float images.

    >>> aug = Augment(padding=4, flip=True)
    >>> x = torch.rand(8, 3, 32, 32)
    >>> aug(x, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
    """

    padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be non-negative; received padding={self.padding}")

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _cpu_generator(generator)
        n = images.shape[0]
        out = images
        # Draw both in a fixed order, whatever is enabled, so one seed means one stream.
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        if self.padding:
            out = shift_crop(out, offsets, self.padding)
        if self.flip:
            mask = flips.to(images.device)[:, None, None, None]
            out = torch.where(mask, out.flip(-1), out)
        return out


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    augment: Augment | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(xb, yb)`` batches from tensors already on their device.

    The permutation is drawn with ``generator`` on the CPU and then moved to ``x.device``, so
    CPU and CUDA see the same order; ``augment`` (if any) draws from the same generator. The
    last partial batch is kept, as Keras ``fit`` does, unless ``drop_last``.

    >>> x, y = torch.arange(10).reshape(10, 1), torch.arange(10)
    >>> [yb.tolist() for _, yb in iterate_batches(x, y, 4, shuffle=False)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} images, {len(y)} labels")
    n = len(x)
    count = num_batches(n, batch_size, drop_last=drop_last)
    _cpu_generator(generator)
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    for i in range(count):
        start, stop = i * batch_size, min((i + 1) * batch_size, n)
        if order is None:
            xb, yb = x[start:stop], y[start:stop]
        else:
            idx = order[start:stop]
            xb, yb = x[idx], y[idx.to(y.device)]
        if augment is not None:
            xb = augment(xb, generator)
        yield xb, yb


__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_DIRNAME",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "IMAGE_SHAPE",
    "META_FILE",
    "NUM_CLASSES",
    "PIXEL_SCALE",
    "REQUIRED_FILES",
    "TEST_FILE",
    "TRAIN_FILES",
    "Augment",
    "Cifar10",
    "Cifar10Error",
    "Cifar10FormatError",
    "Cifar10NotFoundError",
    "Split",
    "default_cache_dir",
    "download_cifar10",
    "extract_tarball",
    "iterate_batches",
    "load_cifar10",
    "missing_files",
    "num_batches",
    "resolve_data_dir",
    "shift_crop",
    "to_float",
]
