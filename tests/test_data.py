"""torch_cnn.data: reading CIFAR-10 batch files, fetching the tarball, batching, augmentation."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from tests.helpers import load_script
from torch_cnn import data
from torch_cnn.data import (
    Augment,
    Cifar10FormatError,
    Cifar10NotFoundError,
    iterate_batches,
    load_cifar10,
    num_batches,
    resolve_data_dir,
    shift_crop,
    to_float,
)

fake = load_script("make_hostile_data")  # the fake batches its corpus starts from
CLASSES = fake.CLASSES
# A different N per file: the loader must read N, not assume 10,000.
TRAIN_SIZES = (7, 5, 6, 7, 3)
TEST_SIZE = 4


def _dump(path: Path, obj: object) -> None:
    # Protocol 2, as the real files (which Python 2 wrote).
    path.write_bytes(pickle.dumps(obj, protocol=2))


def write_fake_cifar(root: Path) -> dict[str, dict[bytes, Any]]:
    """A tiny CIFAR-10 in the real python-batch layout; returns what each file holds."""
    root.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i + 1}": fake.fake_batch(n, i + 1) for i, n in enumerate(TRAIN_SIZES)}
    batches["test_batch"] = fake.fake_batch(TEST_SIZE, 99)
    for name, batch in batches.items():
        _dump(root / name, batch)
    meta = {
        b"num_cases_per_batch": 10000,
        b"label_names": [c.encode() for c in CLASSES],
        b"num_vis": 3072,
    }
    _dump(root / "batches.meta", meta)
    return batches


@pytest.fixture
def fake_dir(tmp_path: Path) -> Path:
    root = tmp_path / "cifar-10-batches-py"
    write_fake_cifar(root)
    return root


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CIFAR10_DIR", "TORCH_CNN_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)


# ---------------------------------------------------------------------------------------------
# Loading


def test_load_shapes_values_and_channel_order(fake_dir: Path) -> None:
    batches = write_fake_cifar(fake_dir)
    ds = load_cifar10(fake_dir)
    assert ds.train.images.shape == (sum(TRAIN_SIZES), 3, 32, 32) == (28, 3, 32, 32)
    assert ds.test.images.shape == (TEST_SIZE, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.train.labels.shape == (28,) and len(ds.test) == TEST_SIZE
    assert ds.classes == CLASSES

    # Image 1 of data_batch_2 is train image 7 + 1 = 8; pixel (row 5, col 17).
    row = batches["data_batch_2"][b"data"][1]
    r, c = 5, 17
    expected = [row[ch * 1024 + r * 32 + c] for ch in range(3)]  # 1024 R, then G, then B
    assert ds.train.images[8, :, r, c].tolist() == [int(v) for v in expected]
    assert ds.train.labels[8].item() == batches["data_batch_2"][b"labels"][1]

    # Whole-array check against an independent NumPy reshape.
    want = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    np.testing.assert_array_equal(ds.train.images.numpy(), want.reshape(-1, 3, 32, 32))
    want_labels = [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    assert ds.train.labels.tolist() == want_labels
    np.testing.assert_array_equal(
        ds.test.images.numpy(), batches["test_batch"][b"data"].reshape(-1, 3, 32, 32)
    )


def test_load_accepts_protocol_5_and_str_keys(fake_dir: Path) -> None:
    batch = fake.fake_batch(3, 7)
    str_keys = {k.decode(): v for k, v in batch.items()}
    (fake_dir / "test_batch").write_bytes(pickle.dumps(str_keys, protocol=5))
    ds = load_cifar10(fake_dir)
    assert ds.test.labels.tolist() == batch[b"labels"]
    np.testing.assert_array_equal(ds.test.images.numpy().reshape(3, -1), batch[b"data"])


def test_accepts_parent_of_batch_dir(fake_dir: Path) -> None:
    assert resolve_data_dir(fake_dir.parent) == fake_dir


def test_truncated_file_names_the_file(fake_dir: Path) -> None:
    path = fake_dir / "data_batch_3"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(Cifar10FormatError, match=r"data_batch_3: truncated or corrupt pickle"):
        load_cifar10(fake_dir)


def test_garbage_file_names_the_file(fake_dir: Path) -> None:
    (fake_dir / "test_batch").write_bytes(b"\x00not a pickle at all")
    with pytest.raises(Cifar10FormatError, match=r"test_batch: truncated or corrupt"):
        load_cifar10(fake_dir)


def test_missing_files_are_listed(fake_dir: Path) -> None:
    (fake_dir / "data_batch_4").unlink()
    (fake_dir / "batches.meta").unlink()
    with pytest.raises(Cifar10NotFoundError) as info:
        load_cifar10(fake_dir)
    msg = str(info.value)
    assert str(fake_dir) in msg
    assert "lacks data_batch_4, batches.meta;" in msg


def test_wrong_directory(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    with pytest.raises(Cifar10NotFoundError, match=r"nowhere does not exist"):
        load_cifar10(nowhere)
    with pytest.raises(Cifar10NotFoundError, match=r"lacks data_batch_1, data_batch_2"):
        load_cifar10(tmp_path)


def test_env_dir_that_lacks_files_is_an_error_not_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("must not download for CIFAR10_DIR")

    monkeypatch.setattr(data.files, "download_cifar10", no_download)
    with pytest.raises(Cifar10NotFoundError, match=r"CIFAR10_DIR .* lacks data_batch_1"):
        resolve_data_dir()


class _Evil:
    """Unpickles as ``os.system(command)``: the classic pickle exploit."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def test_malicious_pickle_is_refused(fake_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    batch = fake.fake_batch(2, 5)
    batch[b"batch_label"] = _Evil(f"touch {marker}")
    raw = pickle.dumps(batch, protocol=2)
    (fake_dir / "data_batch_1").write_bytes(raw)
    with pytest.raises(
        Cifar10FormatError, match=r"data_batch_1: refusing to unpickle posix\.system"
    ):
        load_cifar10(fake_dir)
    assert not marker.exists()
    # The file is a real exploit: plain pickle would have run the command.
    pickle.loads(raw, encoding="bytes")
    assert marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [("builtins", "eval"), ("subprocess", "Popen"), ("numpy", "load"), ("_codecs", "decode")],
)
def test_other_globals_are_refused(fake_dir: Path, module: str, name: str) -> None:
    # A protocol-0 pickle that calls module.name('x').
    raw = f"c{module}\n{name}\n(S'x'\ntR.".encode()
    (fake_dir / "test_batch").write_bytes(raw)
    with pytest.raises(
        Cifar10FormatError, match=rf"test_batch: refusing to unpickle {module}\.{name}"
    ):
        load_cifar10(fake_dir)


def test_codecs_encode_only_latin1(fake_dir: Path) -> None:
    raw = b"c_codecs\nencode\n(Vx\nVzlib_codec\ntR."
    (fake_dir / "test_batch").write_bytes(raw)
    with pytest.raises(Cifar10FormatError, match=r"test_batch: truncated or corrupt.*zlib_codec"):
        load_cifar10(fake_dir)


def _rewrite(path: Path, **changes: Any) -> None:
    batch = pickle.loads(path.read_bytes(), encoding="bytes")
    for key, value in changes.items():
        if value is None:
            del batch[key.encode()]
        else:
            batch[key.encode()] = value
    _dump(path, batch)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": [0, 1, 10, 2, 3, 4, 5]}, r"labels must lie in 0\.\.9; received 10 at index 2"),
        ({"labels": [0, -1, 0, 0, 0, 0, 0]}, r"received -1 at index 1"),
        ({"labels": [0, 1, 2]}, r"3 labels for 7 images"),
        ({"labels": ["a"] * 7}, r"b'labels' must be a list of ints"),
        ({"data": None}, r"expected keys b'data' and b'labels'"),
        ({"labels": None}, r"expected keys b'data' and b'labels'"),
        ({"data": np.zeros((7, 3072), np.float32)}, r"received float32 array of shape \(7, 3072\)"),
        ({"data": np.zeros((7, 32, 32, 3), np.uint8)}, r"shape \(7, 32, 32, 3\)"),
        ({"data": [[0] * 3072] * 7}, r"received list"),
    ],
)
def test_invalid_batch_contents(fake_dir: Path, changes: dict[str, Any], message: str) -> None:
    _rewrite(fake_dir / "data_batch_1", **changes)  # holds 7 images
    with pytest.raises(Cifar10FormatError, match=r"data_batch_1: .*" + message):
        load_cifar10(fake_dir)


def test_not_a_dict_and_bad_meta(fake_dir: Path) -> None:
    _dump(fake_dir / "data_batch_5", [1, 2, 3])
    with pytest.raises(
        Cifar10FormatError, match=r"data_batch_5: expected a pickled dict; received list"
    ):
        load_cifar10(fake_dir)
    write_fake_cifar(fake_dir)
    _dump(fake_dir / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(Cifar10FormatError, match=r"batches.meta: 2 label_names; expected 10"):
        load_cifar10(fake_dir)


@pytest.mark.data
def test_real_sample(cifar10_dir: Path) -> None:
    ds = load_cifar10(cifar10_dir)
    assert ds.train.images.shape == (5085, 3, 32, 32)
    assert ds.test.images.shape == (1017, 3, 32, 32)
    assert ds.train.labels.shape == (5085,) and ds.test.labels.shape == (1017,)
    assert len(ds.classes) == 10 and ds.classes[0] == "airplane" and ds.classes[9] == "truck"
    assert 0 <= int(ds.train.labels.min()) and int(ds.train.labels.max()) == 9
    # Every class in every split (about 100 per class per batch).
    assert torch.bincount(ds.test.labels, minlength=10).min().item() >= 80
    # Real photos: channels differ and use the full range.
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    assert not torch.equal(ds.test.images[:, 0], ds.test.images[:, 2])


@pytest.mark.data
def test_real_sample_arrives_bit_for_bit(cifar10_dir: Path) -> None:
    """The restricted reader gives exactly what plain pickle gives on the (trusted) real files."""
    ds = load_cifar10(cifar10_dir)
    for split, files in ((ds.train, data.TRAIN_FILES), (ds.test, (data.TEST_FILE,))):
        plain = [pickle.loads((cifar10_dir / f).read_bytes(), encoding="bytes") for f in files]
        want = np.concatenate([b[b"data"] for b in plain])
        np.testing.assert_array_equal(split.images.numpy().reshape(len(want), -1), want)
        assert split.labels.tolist() == [label for b in plain for label in b[b"labels"]]
    assert (len(ds.train), len(ds.test)) == (5085, 1017)
    meta = pickle.loads((cifar10_dir / "batches.meta").read_bytes(), encoding="bytes")
    assert ds.classes == [name.decode() for name in meta[b"label_names"]]


def test_an_empty_batch_among_others_is_fine(fake_dir: Path) -> None:
    # Python 3 pickles b"" at protocol 2 as bytes(): readable, and an empty batch is allowed.
    _dump(fake_dir / "data_batch_2", fake.fake_batch(0, 2))
    ds = load_cifar10(fake_dir)
    assert len(ds.train) == sum(TRAIN_SIZES) - TRAIN_SIZES[1]


def test_special_entries_are_not_missing_but_refused(fake_dir: Path) -> None:
    (fake_dir / "data_batch_1").unlink()
    os.mkfifo(fake_dir / "data_batch_1")
    assert data.missing_files(fake_dir) == []  # there is an entry: reading it names the problem
    with pytest.raises(data.Cifar10FileError, match=r"data_batch_1 is a FIFO; expected a regular"):
        load_cifar10(fake_dir)


def test_split_refuses_labels_out_of_range() -> None:
    images = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    data.Split(images, torch.tensor([0, 9, 5]))
    for bad, where in (([0, -100, 1], "-100 at index 1"), ([10, 0, 0], "10 at index 0")):
        with pytest.raises(ValueError, match=rf"lie in 0\.\.9; received {where}"):
            data.Split(images, torch.tensor(bad))


# ---------------------------------------------------------------------------------------------
# to_float


def test_to_float_divides_by_255_on_both_splits() -> None:
    x = torch.arange(256, dtype=torch.uint8)
    got = to_float(x)
    assert got.dtype == torch.float32
    np.testing.assert_array_equal(got.numpy(), np.arange(256).astype("float32") / 255.0)
    assert got[255].item() == 1.0  # not the /225.0 typo of seed 001's test split
    assert to_float(x, torch.float64)[51].item() == pytest.approx(0.2, abs=1e-15)
    with pytest.raises(TypeError, match=r"expects uint8 images; received torch.float32"):
        to_float(got)


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.int16, torch.bool, torch.float64]
)
def test_to_float_divides_nothing_but_uint8(dtype: torch.dtype) -> None:
    # int64 images divided by 255 would give a loss of 137 instead of 2.36 (issue 16).
    with pytest.raises(TypeError, match=rf"expects uint8 images; received {dtype}"):
        to_float(torch.zeros(2, 3, 32, 32, dtype=dtype))


# ---------------------------------------------------------------------------------------------
# Fetching the tarball


def _make_tarball(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    write_fake_cifar(src / "cifar-10-batches-py")
    (src / "cifar-10-batches-py" / "readme.html").write_text("<html></html>")
    archive = tmp_path / "served" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_md5_and_extracts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    archive, md5 = _make_tarball(tmp_path)
    monkeypatch.setattr(data.files, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data.files, "CIFAR10_MD5", md5)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TORCH_CNN_CACHE", str(cache))

    root = resolve_data_dir()
    assert root == cache / "cifar-10-batches-py"
    assert sorted(p.name for p in root.iterdir()) == sorted([*data.REQUIRED_FILES, "readme.html"])
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []  # no temp leftovers
    ds = load_cifar10(root)
    assert len(ds.train) == 28 and ds.classes[0] == "airplane"

    # Found in the cache now: no second download.
    monkeypatch.setattr(data.files, "CIFAR10_URL", (tmp_path / "gone.tar.gz").as_uri())
    assert resolve_data_dir() == root


def test_download_wrong_md5_deletes_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    archive, md5 = _make_tarball(tmp_path)
    monkeypatch.setattr(data.files, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(data.files, "CIFAR10_MD5", "0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(Cifar10FormatError, match=rf"has md5 {md5}, expected 0{{32}}; deleted"):
        resolve_data_dir(cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_no_network_says_where_to_put_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_env: None
) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    cache = tmp_path / "cache"
    with pytest.raises(Cifar10NotFoundError) as info:
        resolve_data_dir(cache_dir=cache)
    msg = str(info.value)
    target = cache / "cifar-10-batches-py"
    assert f"{target}/data_batch_1" in msg
    assert "Network is unreachable" in msg
    assert "CIFAR10_DIR" in msg and "--data-dir" in msg
    assert [p.name for p in cache.iterdir()] == []

    with pytest.raises(Cifar10NotFoundError, match=r"download=False.*CIFAR10_DIR"):
        resolve_data_dir(cache_dir=cache, download=False)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, no_env: None) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert data.default_cache_dir() == Path("/home/someone/.cache/torch_cnn")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert data.default_cache_dir() == Path("/xdg/torch_cnn")
    monkeypatch.setenv("TORCH_CNN_CACHE", "/tc")
    assert data.default_cache_dir() == Path("/tc")


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("../evil.txt", tarfile.REGTYPE, "outside the archive"),
        ("cifar-10-batches-py/../../evil.txt", tarfile.REGTYPE, "outside the archive"),
        ("/tmp/evil.txt", tarfile.REGTYPE, "absolute path"),
        ("cifar-10-batches-py/link", tarfile.SYMTYPE, "only regular files and directories"),
    ],
)
def test_unsafe_tar_members_are_refused(
    tmp_path: Path, name: str, kind: bytes, message: str
) -> None:
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as tar:
        ok = tarfile.TarInfo("cifar-10-batches-py/fine.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        bad = tarfile.TarInfo(name)
        bad.type = kind
        if kind == tarfile.SYMTYPE:
            bad.linkname = "/etc/passwd"
            tar.addfile(bad)
        else:
            bad.size = 4
            tar.addfile(bad, io.BytesIO(b"evil"))
    dest = tmp_path / "dest" / "inner"
    with pytest.raises(Cifar10FormatError, match=message):
        data.extract_tarball(archive, dest)
    assert not dest.exists()  # refused before anything was written
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "dest" / "evil.txt").exists()


# ---------------------------------------------------------------------------------------------
# Batching


def test_num_batches() -> None:
    assert num_batches(10, 4) == 3
    assert num_batches(10, 4, drop_last=True) == 2
    assert num_batches(12, 4) == 3 == num_batches(12, 4, drop_last=True)
    assert num_batches(50000, 32) == 1563  # Keras's steps per epoch
    assert num_batches(0, 4) == 0
    with pytest.raises(ValueError, match=r"received batch_size=0"):
        num_batches(10, 0)


def _epoch(seed: int | None, n: int = 10, bs: int = 4, **kw: Any) -> list[list[int]]:
    x = torch.arange(n * 2).reshape(n, 2)
    y = torch.arange(n)
    g = None if seed is None else torch.Generator().manual_seed(seed)
    out = []
    for xb, yb in iterate_batches(x, y, bs, generator=g, **kw):
        assert torch.equal(xb[:, 0], 2 * yb)  # images and labels stay paired
        out.append(yb.tolist())
    return out


def test_every_image_once_and_last_partial_batch_kept() -> None:
    batches = _epoch(0)
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [v for b in batches for v in b]
    assert sorted(flat) == list(range(10))
    assert flat != list(range(10))  # really shuffled
    assert [len(b) for b in _epoch(0, drop_last=True)] == [4, 4]
    assert _epoch(None, shuffle=False) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_order_is_seeded() -> None:
    assert _epoch(1, n=100, bs=16) == _epoch(1, n=100, bs=16)
    assert _epoch(1, n=100, bs=16) != _epoch(2, n=100, bs=16)
    # Two epochs from one generator differ (the stream advances).
    g = torch.Generator().manual_seed(3)
    x, y = torch.zeros(50, 1), torch.arange(50)
    first = torch.cat([yb for _, yb in iterate_batches(x, y, 8, generator=g)])
    second = torch.cat([yb for _, yb in iterate_batches(x, y, 8, generator=g)])
    assert not torch.equal(first, second)
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(50))


def test_batching_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"10 images, 9 labels"):
        next(iterate_batches(torch.zeros(10, 1), torch.zeros(9), 4))


@pytest.mark.cuda
def test_cuda_sees_the_cpu_order(cuda_device: str) -> None:
    x = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(37)
    aug = Augment()

    def run(device: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(5)
        it = iterate_batches(x.to(device), y.to(device), 8, generator=g, augment=aug)
        return [(xb.cpu(), yb.cpu()) for xb, yb in it]

    for (xc, yc), (xg, yg) in zip(run("cpu"), run(cuda_device), strict=True):
        assert torch.equal(yc, yg) and torch.equal(xc, xg)


# ---------------------------------------------------------------------------------------------
# Augmentation


def _reference_crop(x: np.ndarray, dy: int, dx: int, pad: int) -> np.ndarray:
    """One image (C, H, W), zero-padded and cropped at (dy, dx): a plain NumPy reference."""
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    return padded[:, dy : dy + x.shape[1], dx : dx + x.shape[2]]


def test_shift_crop_matches_numpy_reference() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=g)
    offsets = torch.randint(0, 9, (16, 2), generator=g)
    got = shift_crop(x, offsets, 4)
    assert got.shape == x.shape and got.dtype == torch.uint8
    for i in range(16):
        dy, dx = offsets[i].tolist()
        np.testing.assert_array_equal(got[i].numpy(), _reference_crop(x[i].numpy(), dy, dx, 4))
    # Centre offset is the identity; offset (0, 0) shifts content down-right by 4 with zeros above.
    assert torch.equal(shift_crop(x, torch.full((16, 2), 4), 4), x)
    shifted = shift_crop(x, torch.zeros(16, 2, dtype=torch.long), 4)
    assert int(shifted[:, :, :4].abs().sum()) == 0 and int(shifted[:, :, :, :4].abs().sum()) == 0
    assert torch.equal(shifted[:, :, 4:, 4:], x[:, :, :28, :28])


def test_augment_shapes_determinism_and_dtype() -> None:
    x = torch.rand(32, 3, 32, 32)
    aug = Augment(padding=4, flip=True)
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    xu = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert aug(xu, torch.Generator().manual_seed(0)).dtype == torch.uint8
    with pytest.raises(ValueError, match=r"received padding=-1"):
        Augment(padding=-1)


def test_flip_really_flips() -> None:
    x = torch.rand(64, 3, 32, 32)
    out = Augment(padding=0, flip=True)(x, torch.Generator().manual_seed(0))
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    flipped = [torch.equal(out[i], x[i, :, :, torch.arange(31, -1, -1)]) for i in range(64)]
    assert all(s != f for s, f in zip(same, flipped, strict=True))  # each one or the other
    assert 16 <= sum(flipped) <= 48  # p = 0.5 over 64 images
    assert torch.equal(Augment(padding=0, flip=False)(x, torch.Generator().manual_seed(0)), x)


def test_crop_shifts_content_within_padding() -> None:
    pad = 4
    x = torch.randint(1, 256, (64, 1, 8, 8), dtype=torch.uint8)  # no zero pixels of its own
    out = Augment(padding=pad, flip=False)(x, torch.Generator().manual_seed(0))
    shifts = set()
    for i in range(64):  # the test loops; the augmentation does not
        matches = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(out[i].numpy(), _reference_crop(x[i].numpy(), dy, dx, pad))
        ]
        assert len(matches) == 1
        shifts.add(matches[0])
    assert len(shifts) > 20  # offsets vary over the 81 possible


def test_augment_has_no_per_sample_loop() -> None:
    """The number of torch calls does not grow with the batch size."""

    class Count(TorchFunctionMode):
        calls = 0

        def __torch_function__(
            self, func: Any, types: Any, args: Any = (), kwargs: Any = None
        ) -> Any:
            Count.calls += 1
            return func(*args, **(kwargs or {}))

    def calls(n: int) -> int:
        Count.calls = 0
        x = torch.rand(n, 3, 32, 32)
        with Count():
            Augment()(x, torch.Generator().manual_seed(0))
        return Count.calls

    small, large = calls(2), calls(512)
    assert small == large
    assert small < 40


def test_iterate_batches_with_augment_keeps_labels_and_is_seeded() -> None:
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(10)

    def epoch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        pairs = list(iterate_batches(x, y, 4, generator=g, augment=Augment()))
        assert [len(yb) for _, yb in pairs] == [4, 4, 2]
        return torch.cat([xb for xb, _ in pairs]), torch.cat([yb for _, yb in pairs])

    xa, ya = epoch(0)
    xb, yb = epoch(0)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(xa, x[ya])  # augmented, not just reordered
    # Each output is its source image, possibly mirrored, shifted by at most 4 pixels.
    offsets = torch.cartesian_prod(torch.arange(9), torch.arange(9))  # (81, 2)
    for i in range(10):
        src = x[ya[i]]
        cands = torch.cat([src.expand(81, -1, -1, -1), src.flip(-1).expand(81, -1, -1, -1)])
        cands = shift_crop(cands, offsets.repeat(2, 1), 4)  # (162, 3, 32, 32)
        assert bool((cands == xa[i]).flatten(1).all(1).any())


@pytest.mark.cuda
def test_generator_must_be_on_cpu(cuda_device: str) -> None:
    g = torch.Generator(device=cuda_device)
    with pytest.raises(ValueError, match=r"CPU torch.Generator"):
        Augment()(torch.zeros(2, 3, 4, 4), g)
    with pytest.raises(ValueError, match=r"CPU torch.Generator"):
        next(iterate_batches(torch.zeros(2, 1), torch.zeros(2), 1, generator=g))
