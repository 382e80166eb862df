"""Where CIFAR-10 lives: the data directory (explicit, ``CIFAR10_DIR`` or the cache) and its download.

The files come from ``resolve_data_dir``: an explicit directory, else ``CIFAR10_DIR``,
else a cache directory that is filled by downloading the official tarball (md5-checked,
extracted safely: no links, no absolute or ``..`` paths, at most ``MAX_ARCHIVE_MEMBERS``
members and ``MAX_ARCHIVE_BYTES`` bytes).

A data directory is something users copy between machines, so its files are read
defensively (``data_file_sizes``, ``open_data_file``): regular files only (a symbolic link,
FIFO, device or directory in a batch's place is refused without being opened, so nothing
can hang on a FIFO or read a file outside the directory), each within ``MAX_BATCH_BYTES``
(``MAX_META_BYTES`` for ``batches.meta``) and all of them within ``MAX_DATA_BYTES``, checked
before anything is read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

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

# Caps on what a data directory may claim. A full batch is 31 MB (10,000 images, 30,720,000
# bytes of pixels) and the whole directory 178 MB: the caps leave ~30x room for bigger custom
# batches while keeping what a hostile directory can make the loader allocate bounded.
MAX_BATCH_BYTES = 1 << 30  # one batch file (about 350,000 images)
MAX_META_BYTES = 1 << 20  # batches.meta (158 bytes in the real dataset)
MAX_DATA_BYTES = 4 << 30  # all seven files together
# The official tarball holds 9 members, 184 MB once extracted.
MAX_ARCHIVE_MEMBERS = 1000
MAX_ARCHIVE_BYTES = 1 << 30

_DOWNLOAD_CHUNK = 1 << 20


class Cifar10Error(Exception):
    """Base of the errors this package raises about CIFAR-10 files."""


class Cifar10FormatError(Cifar10Error, ValueError):
    """A file is there but is not a valid CIFAR-10 python batch (or archive)."""


class Cifar10NotFoundError(Cifar10Error, FileNotFoundError):
    """The CIFAR-10 files are not where they were looked for and could not be downloaded."""


class Cifar10FileError(Cifar10Error, OSError):
    """A CIFAR-10 path is there but cannot be read as one: a symbolic link, FIFO, device or
    directory where a regular file belongs, a file where the directory belongs, no permission,
    or an I/O error."""


def default_cache_dir() -> Path:
    """``$TORCH_CNN_CACHE``, else ``$XDG_CACHE_HOME/torch_cnn``, else ``~/.cache/torch_cnn``."""
    if value := os.environ.get("TORCH_CNN_CACHE"):
        return Path(value).expanduser()
    if value := os.environ.get("XDG_CACHE_HOME"):
        return Path(value).expanduser() / "torch_cnn"
    return Path.home() / ".cache" / "torch_cnn"


def missing_files(directory: StrPath) -> list[str]:
    """Which of ``REQUIRED_FILES`` ``directory`` has no entry for (all of them if it does not exist).

    An entry of the wrong kind (a FIFO, a link) is not missing: reading it names the problem.
    """
    directory = Path(directory)
    return [name for name in REQUIRED_FILES if not os.path.lexists(directory / name)]


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFREG: "a regular file",
}


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "a special file")


def _lstat_regular(path: Path) -> os.stat_result:
    """``lstat(path)``, refusing anything but a regular file (a link is not followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as exc:
        raise Cifar10NotFoundError(f"{path}: no such file") from exc
    except OSError as exc:
        raise Cifar10FileError(f"{path}: cannot be read ({exc.strerror})") from exc
    if not stat.S_ISREG(st.st_mode):
        where = ""
        if stat.S_ISLNK(st.st_mode):
            try:
                where = f" to {os.readlink(path)!r}"
            except OSError:  # replaced meanwhile: the link's target does not matter
                pass
        raise Cifar10FileError(
            f"{path} is {_kind(st.st_mode)}{where}; expected a regular file (links are not "
            f"followed inside a data directory: copy the file there instead)"
        )
    return st


def data_file_sizes(root: StrPath) -> dict[str, int]:
    """The sizes of ``REQUIRED_FILES`` in ``root``, each checked before anything is read.

    Each must be a regular file (not a link, FIFO, device or directory), a batch at most
    ``MAX_BATCH_BYTES``, ``batches.meta`` at most ``MAX_META_BYTES``, all together at most
    ``MAX_DATA_BYTES``; else a ``Cifar10Error`` naming the file and the cap.
    """
    root = Path(root)
    sizes: dict[str, int] = {}
    for name in REQUIRED_FILES:
        size = _lstat_regular(root / name).st_size
        cap = MAX_META_BYTES if name == META_FILE else MAX_BATCH_BYTES
        if size > cap:
            raise Cifar10FormatError(
                f"{root / name} is {size:,} bytes, over the cap of {cap:,} for "
                f"{'batches.meta' if name == META_FILE else 'one batch file'} (a full CIFAR-10 "
                f"batch is 31 MB)"
            )
        sizes[name] = size
    total = sum(sizes.values())
    if total > MAX_DATA_BYTES:
        raise Cifar10FormatError(
            f"{root}: its files hold {total:,} bytes, over the cap of {MAX_DATA_BYTES:,} for a "
            f"data directory (the full CIFAR-10 is 178 MB)"
        )
    return sizes


def open_data_file(path: StrPath, max_bytes: int = MAX_BATCH_BYTES) -> tuple[IO[bytes], int]:
    """``(file, size)`` for a regular file of at most ``max_bytes``, opened without following links.

    The file is checked with ``lstat`` before it is opened (a FIFO is never opened, so it
    cannot block), opened with ``O_NOFOLLOW`` and checked again (the same file, still regular).
    """
    path = Path(path)
    before = _lstat_regular(path)
    if before.st_size > max_bytes:
        raise Cifar10FormatError(
            f"{path} is {before.st_size:,} bytes, over the cap of {max_bytes:,}"
        )
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # POSIX; lstat came first
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise Cifar10NotFoundError(f"{path}: no such file") from exc
    except PermissionError as exc:
        raise Cifar10FileError(
            f"{path}: permission denied; expected a readable regular file"
        ) from exc
    except OSError as exc:
        what = "it became a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise Cifar10FileError(f"{path}: cannot be opened ({what})") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Cifar10FileError(f"{path} changed while being opened; expected a regular file")
    if st.st_size > max_bytes:
        os.close(fd)
        raise Cifar10FormatError(f"{path} is {st.st_size:,} bytes, over the cap of {max_bytes:,}")
    return os.fdopen(fd, "rb"), st.st_size


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
    try:
        st = os.stat(path)  # the directory the user named may itself be a link
    except FileNotFoundError as exc:
        raise Cifar10NotFoundError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise Cifar10FileError(f"{what} {path} cannot be read ({exc.strerror})") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise Cifar10FileError(
            f"{what} {path} is {_kind(st.st_mode)}, not a directory; expected a directory "
            f"holding {', '.join(REQUIRED_FILES)}"
        )
    try:
        entries = set(os.listdir(path))
    except OSError as exc:
        raise Cifar10FileError(f"{what} {path} cannot be listed ({exc.strerror})") from exc
    missing = [name for name in REQUIRED_FILES if name not in entries]
    if not missing:
        return path
    # Accept the directory the tarball was extracted into (a real directory, not a link).
    sub = path / CIFAR10_DIRNAME
    if CIFAR10_DIRNAME in entries and _is_real_dir(sub) and not missing_files(sub):
        return sub
    raise Cifar10NotFoundError(
        f"{what} {path} lacks {', '.join(missing)}; expected all of {', '.join(REQUIRED_FILES)}"
    )


def _is_real_dir(path: Path) -> bool:
    """A directory, not a link to one."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


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


class _CappedReader:
    """A view of a (decompressed) archive stream that refuses a single read over ``max_read``
    bytes and more than ``max_total`` bytes in all: tarfile reads a pax or GNU long-name
    header whole, so a header declaring gigabytes would otherwise be read into memory."""

    def __init__(self, raw: IO[bytes], archive: Path, max_read: int, max_total: int) -> None:
        self._raw, self._archive = raw, archive
        self._max_read, self._max_total = max_read, max_total
        self._total = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > self._max_read:
            raise Cifar10FormatError(
                f"{self._archive}: refusing a single read of {n} bytes (a tar header that "
                f"declares more metadata than any CIFAR-10 archive holds)"
            )
        data = self._raw.read(n)
        self._total += len(data)
        if self._total > self._max_total:
            raise Cifar10FormatError(
                f"{self._archive}: more than {self._max_total:,} bytes read from the archive"
            )
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """``raw`` itself, or a gzip/bz2/xz reader over it, told by the first bytes (as tarfile's ``r:*``)."""
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        import gzip

        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    if head.startswith(b"BZh"):
        import bz2

        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        import lzma

        return lzma.LZMAFile(raw)
    return raw


def _archive_read_errors() -> tuple[type[BaseException], ...]:
    import lzma
    import zlib

    # What a damaged archive makes tarfile and the decompressors raise (BadGzipFile is an OSError).
    return (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError)


def _list_members(
    tar: tarfile.TarFile, archive: Path, max_members: int, max_bytes: int
) -> list[tarfile.TarInfo]:
    """Every member, checked: names inside the archive, kinds, count and declared sizes.

    Read lazily, so a member over a cap stops the listing before tarfile skips its data.
    """
    members: list[tarfile.TarInfo] = []
    total = 0
    for m in tar:
        parts = PurePosixPath(m.name).parts
        if m.name.startswith(("/", "\\")) or PurePosixPath(m.name).is_absolute():
            raise Cifar10FormatError(f"{archive}: refusing member with absolute path {m.name!r}")
        if not parts or ".." in parts or any(":" in p or "\\" in p for p in parts):
            raise Cifar10FormatError(f"{archive}: refusing member outside the archive {m.name!r}")
        if not (m.isfile() or m.isdir()):
            raise Cifar10FormatError(
                f"{archive}: refusing member {m.name!r}: only regular files and directories"
            )
        if len(members) >= max_members:
            raise Cifar10FormatError(
                f"{archive}: more than {max_members:,} members, the cap (CIFAR-10's has 9)"
            )
        total += m.size if m.isfile() else 0
        if total > max_bytes:
            raise Cifar10FormatError(
                f"{archive}: its members declare more than {max_bytes:,} bytes (at {m.name!r}), "
                f"the cap (CIFAR-10's hold 184 MB)"
            )
        members.append(m)
    return members


def extract_tarball(
    archive: StrPath,
    dest: StrPath,
    *,
    max_members: int = MAX_ARCHIVE_MEMBERS,
    max_bytes: int = MAX_ARCHIVE_BYTES,
) -> None:
    """Extract the regular files and directories of ``archive`` under ``dest``, refusing unsafe members.

    Every member is checked before anything is written: a member with an absolute path, a
    ``..`` component, or of another kind (link, device, fifo), more than ``max_members``
    members, declared sizes over ``max_bytes`` in all or over the free space in ``dest``, or
    an archive that is truncated or not a (gzip, bz2, xz) tar at all raise
    ``Cifar10FormatError``. Files are extracted to a temporary directory inside ``dest``,
    each copy capped at its declared size, and then renamed into place one by one.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        raw = archive.open("rb")
    except FileNotFoundError as exc:
        raise Cifar10NotFoundError(f"{archive}: no such file") from exc
    except OSError as exc:
        raise Cifar10FileError(f"{archive}: cannot be read ({exc.strerror})") from exc
    read_errors = _archive_read_errors()
    with raw:
        try:
            stream = _CappedReader(
                _decompressed(raw), archive, _DOWNLOAD_CHUNK * 8, max_bytes + (64 << 20)
            )
            tar = tarfile.open(fileobj=stream, mode="r:")  # type: ignore[call-overload]
            members = _list_members(tar, archive, max_members, max_bytes)
        except Cifar10Error:
            raise
        except read_errors as exc:
            raise Cifar10FormatError(f"{archive}: not a readable tar archive ({exc})") from exc
        _extract_members(tar, members, archive, dest, read_errors)


def _extract_members(
    tar: tarfile.TarFile,
    members: list[tarfile.TarInfo],
    archive: Path,
    dest: Path,
    read_errors: tuple[type[BaseException], ...],
) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
        needed = sum(m.size for m in members if m.isfile())
        if (free := shutil.disk_usage(dest).free) < needed:
            raise Cifar10FileError(
                f"{dest}: {free:,} bytes free; {archive} needs {needed:,} to extract"
            )
        staging = Path(tempfile.mkdtemp(prefix=".extract.", dir=dest))
    except OSError as exc:
        raise Cifar10FileError(f"{dest}: cannot extract there ({exc})") from exc
    try:
        written: list[PurePosixPath] = []
        for m in members:
            rel = PurePosixPath(m.name)
            try:
                if m.isdir():
                    (staging / rel).mkdir(parents=True, exist_ok=True)
                    continue
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                out = (staging / rel).open("wb")
            except OSError as exc:
                raise Cifar10FileError(f"{dest}: cannot extract {m.name!r} there ({exc})") from exc
            with out:
                _copy_member(tar, m, out, archive, dest, read_errors)
            written.append(rel)
        for rel in written:
            try:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, dest / rel)
            except OSError as exc:
                raise Cifar10FileError(f"{dest}: cannot place {str(rel)!r} there ({exc})") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    out: IO[bytes],
    archive: Path,
    dest: Path,
    read_errors: tuple[type[BaseException], ...],
) -> None:
    """Copy one member's declared bytes; read errors are the archive's, write errors ``dest``'s."""
    try:
        src = tar.extractfile(member)
    except read_errors as exc:
        raise Cifar10FormatError(f"{archive}: member {member.name!r} unreadable ({exc})") from exc
    if src is None:  # pragma: no cover - isfile() members always have data
        return
    left = member.size
    while left > 0:
        try:
            chunk = src.read(min(_DOWNLOAD_CHUNK, left))
        except Cifar10Error:
            raise
        except read_errors as exc:
            raise Cifar10FormatError(
                f"{archive}: member {member.name!r} is truncated or damaged ({exc})"
            ) from exc
        if not chunk:
            raise Cifar10FormatError(f"{archive}: member {member.name!r} is truncated")
        try:
            out.write(chunk)
        except OSError as exc:
            raise Cifar10FileError(f"{dest}: cannot write {member.name!r} ({exc})") from exc
        left -= len(chunk)
