"""Where CIFAR-10 lives: the data directory (explicit, ``CIFAR10_DIR`` or the cache) and its download.

The files come from ``resolve_data_dir``: an explicit directory, else ``CIFAR10_DIR``,
else a cache directory that is filled by downloading the official tarball (md5-checked,
extracted safely: no links, no absolute or ``..`` paths).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import IO, Any

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
    """Base of the errors this package raises about CIFAR-10 files."""


class Cifar10FormatError(Cifar10Error, ValueError):
    """A file is there but is not a valid CIFAR-10 python batch (or archive)."""


class Cifar10NotFoundError(Cifar10Error, FileNotFoundError):
    """The CIFAR-10 files are not where they were looked for and could not be downloaded."""


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
    torch_cnn.data.files.Cifar10NotFoundError: CIFAR-10 directory ... lacks data_batch_1, ...
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
