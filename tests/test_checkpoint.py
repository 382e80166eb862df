"""torch_cnn.save / torch_cnn.load: safetensors, self-describing, never half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import torch_cnn
from torch_cnn.weights import CheckpointError, read_metadata


@pytest.mark.parametrize("name", torch_cnn.list_models())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(tmp_path: Path, name: str, dtype: torch.dtype) -> None:
    model = torch_cnn.create_model(name, dtype=dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    path = torch_cnn.save(model, tmp_path / "w.safetensors")
    meta = read_metadata(path)
    assert meta["model"] == name and meta["torch_cnn_version"] == torch_cnn.__version__
    loaded = torch_cnn.load(path)
    assert type(loaded) is type(model)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), k
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]  # no temporary left


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        torch_cnn.load(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        torch_cnn.load(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="without torch_cnn metadata"):
        torch_cnn.load(foreign)


def test_truncated_file(tmp_path: Path) -> None:
    path = torch_cnn.save(torch_cnn.create_model("model_cnn"), tmp_path / "w.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"w\.safetensors"):
        torch_cnn.load(path)


def test_wrong_architecture_in_metadata(tmp_path: Path) -> None:
    """A file claiming to be model_cnn but holding model_cifar10's tensors."""
    src = torch_cnn.create_model("model_cifar10")
    path = tmp_path / "w.safetensors"
    meta = {"format": "torch_cnn.weights", "model": "model_cnn", "dtype": "float32"}
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path), metadata=meta)
    with pytest.raises(CheckpointError, match=r"do not fit 'model_cnn'.*conv1.weight"):
        torch_cnn.load(path)


def test_failed_save_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = torch_cnn.save(torch_cnn.create_model("model_cnn"), tmp_path / "w.safetensors")
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_bytes", boom)  # the write of the serialised bytes fails
    with pytest.raises(OSError, match="disk full"):
        torch_cnn.save(torch_cnn.create_model("model_cnn"), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]
