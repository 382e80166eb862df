"""Smoke tests of ``torch-cnn bench``: every path runs for a few steps and writes sound records.

The benchmark is not a test. These check that each path still runs (so it cannot rot)
and that its records keep their schema, not what the numbers are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from torch_cnn import bench
from torch_cnn.bench_keras import RECORD_KEYS

# model_cnn compiles fastest; batch 8 and 16 images per repeat keep each path to a few steps.
QUICK = ["--quick", "--model", "model_cnn", "--batch-size", "8", "--large-batch", "16"]
QUICK += ["--images", "32"]


def _bench_via_subcommand(argv: list[str]) -> int:
    """Run ``bench`` as ``cli.build_parser`` will: through ``add_command``."""
    parser = argparse.ArgumentParser(prog="torch-cnn")
    bench.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    status: int = args.func(args)
    return status


def _check_records(records: list[dict[str, Any]], expected: set[tuple[str, str, str, int]]) -> None:
    got = {(r["framework"], r["mode"], r["task"], r["batch_size"]) for r in records}
    assert got == expected
    for r in records:
        assert set(RECORD_KEYS) <= set(r), sorted(set(RECORD_KEYS) - set(r))
        assert r["model"] == "model_cnn"
        assert r["task"] in ("train", "infer")
        for key in ("images_per_s", "images_per_s_min", "images_per_s_max", "peak_memory_mb"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["images_per_s_min"] <= r["images_per_s"] <= r["images_per_s_max"]
        assert r["compile_s"] >= 0 and r["warmup_s"] >= 0
        assert r["repeats"] == len(r["seconds"]) == 2
        assert r["images_per_repeat"] % r["batch_size"] == 0
        assert r["gflop_per_s"] > 0


def test_torch_cnn_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert _bench_via_subcommand([*QUICK, "--frameworks", "torch_cnn", "--json", str(out)]) == 0
    records = json.loads(out.read_text())
    _check_records(
        records,
        {
            ("torch_cnn", mode, task, batch)
            for mode in ("parity", "fast")
            for task, batch in (("infer", 16), ("train", 8), ("train", 16))
        },
    )
    fast = [r for r in records if r["mode"] == "fast"]
    parity = [r for r in records if r["mode"] == "parity"]
    assert all(r["settings"]["memory_format"] == "channels_last" for r in fast)
    assert all(r["settings"]["autocast"] is None for r in parity)
    assert all(r["settings"].get("optimizer") in (None, "keras_adam") for r in parity)
    assert all(r["peak_gflop_per_s"] > 0 for r in records)
    report = capsys.readouterr().out
    assert "| torch_cnn | parity | train | 8 |" in report
    assert "parity train @8 vs Keras-TF fit @8 (its best mode): not measured" in report


def test_keras_paths(keras: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    frameworks = "keras_tensorflow,keras_torch"
    assert bench.main([*QUICK, "--frameworks", frameworks, "--json", str(out)]) == 0
    expected = {
        (framework, mode, task, batch)
        for framework, modes in (
            ("keras_tensorflow", ("default", "xla", "multistep")),
            ("keras_torch", ("default",)),
        )
        for mode in modes
        for task, batch in (("infer", 16), ("train", 8), ("train", 16))
    }
    records = json.loads(out.read_text())
    _check_records(records, expected)
    assert {r["versions"]["keras"] for r in records} == {keras.__version__}


@pytest.mark.cuda
def test_cuda_paths(cuda_device: str, tmp_path: Path) -> None:
    """On a GPU: the CUDA-graph training step and the compiled inference run too."""
    out = tmp_path / "bench.json"
    argv = [*QUICK, "--device", cuda_device, "--frameworks", "torch_cnn", "--json", str(out)]
    assert bench.main(argv) == 0
    records = json.loads(out.read_text())
    assert all(r["device"] == "cuda" and r["memory_kind"] == "cuda_max_allocated" for r in records)
    fast_train = [r for r in records if r["mode"] == "fast" and r["task"] == "train"]
    assert fast_train and all(r["settings"]["cuda_graphs"] for r in fast_train)


@pytest.mark.cuda
def test_cuda_graph_trainer_trains_the_given_model(cuda_device: str) -> None:
    """Capture's warm-up steps are undone: the first replayed epoch starts from the given weights."""
    model = bench.seeded_model("model_cnn", 0, device=cuda_device)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = (
        torch.rand(64, 3, 32, 32, device=cuda_device),
        torch.randint(0, 10, (64,), device=cuda_device),
    )
    settings = bench.fast_settings(torch.device(cuda_device), 16)
    trainer = bench.CudaGraphTrainer(model, x, y, settings, 16)
    assert all(torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))
    trainer.epoch(64, torch.Generator(device=cuda_device).manual_seed(0))
    torch.cuda.synchronize()
    assert not any(torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))


def _rec(framework: str, mode: str, task: str, batch: int, rate: float) -> dict[str, Any]:
    return {
        "framework": framework,
        "mode": mode,
        "task": task,
        "batch_size": batch,
        "device": "cpu",
        "images_per_s": rate,
        "images_per_s_min": rate,
        "images_per_s_max": rate,
        "peak_memory_mb": 100.0,
        "images_per_repeat": 4096,
    }


def test_target_report_compares_with_kerass_best() -> None:
    records = [
        _rec("torch_cnn", "parity", "train", 32, 2000.0),
        _rec("torch_cnn", "parity", "infer", 256, 9000.0),
        _rec("torch_cnn", "fast", "train", 256, 5000.0),
        _rec("keras_tensorflow", "default", "train", 32, 1000.0),
        _rec("keras_tensorflow", "xla", "train", 32, 800.0),
        _rec("keras_tensorflow", "default", "train", 256, 2000.0),
        _rec("keras_tensorflow", "default", "infer", 256, 4000.0),
    ]
    lines = bench.target_report(records, 32)
    assert "**2.00×** (target ≥ 2×): met" in lines[0]
    assert "**2.25×** (target ≥ 3×): NOT met" in lines[1]
    assert "5,000 / 2,000 img/s = **2.50×** (target ≥ 3×): NOT met" in lines[2]
    assert "| 0.80× |" in bench.format_table(records)  # xla's row against Keras's best at 32


def test_settings_refuse_cuda_graphs_with_keras_adam() -> None:
    with pytest.raises(ValueError, match="capturable optimizer"):
        bench.Settings("fast", 256, optimizer="keras_adam", cuda_graphs=True)
    with pytest.raises(ValueError, match="KEY=VALUE"):
        bench.parse_overrides("bf16")


def test_accuracy_check_runs_both_modes(cifar10_dir: Path) -> None:
    config = bench.RunConfig(model="model_cnn")
    result = bench.accuracy_check(config, str(cifar10_dir), seeds=(0,), epochs=1)
    for mode in ("parity", "fast"):
        (acc,) = result[mode]["test_accuracy"]
        assert 0.0 <= acc <= 1.0
    assert result["difference_points"] == pytest.approx(
        100 * (result["fast"]["mean"] - result["parity"]["mean"])
    )
    assert result["fast_settings"]["batch_size"] == config.small_batch == 32  # the recipe's


def test_fast_overrides_replace_the_batch() -> None:
    from torch_cnn.bench import RunConfig, parse_overrides

    config = RunConfig(fast_overrides=parse_overrides("batch_size=128,bf16=false"))
    fast = config.settings("fast")
    assert (fast.batch_size, fast.bf16, fast.channels_last) == (128, False, True)
    assert config.settings("parity").batch_size == config.large == 256


def test_fast_target_needs_the_accuracy_check() -> None:
    records = [
        _rec("torch_cnn", "fast", "train", 256, 9000.0),
        _rec("keras_tensorflow", "default", "train", 32, 1000.0),
    ]
    unchecked = bench.target_report(records, 32)[2]
    assert "**9.00×** (target ≥ 3×): met for speed; accuracy not checked" in unchecked
    checked = {"fast_settings": {"batch_size": 256}}
    held = bench.target_report(records, 32, {**checked, "difference_points": -1.5})[2]
    assert held.endswith("met, accuracy -1.50 points")
    lost = bench.target_report(records, 32, {**checked, "difference_points": -2.5})[2]
    assert lost.endswith("NOT met: accuracy -2.50 points")
    # The speed claimed is the checked recipe's (its batch), not another row's.
    other = bench.target_report(
        records, 32, {"fast_settings": {"batch_size": 32}, "difference_points": 0}
    )
    assert other[2].startswith("- fast train (batch ?)") and other[2].endswith("not measured")


def test_readme_section_is_replaced_only_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before = (
        "# x\n<!-- bench model_cnn cpu start -->\nold table\n<!-- bench model_cnn cpu end -->\n"
        "<!-- bench model_cnn cuda start -->\ngpu\n<!-- bench model_cnn cuda end -->\n"
    )
    readme.write_text(before)
    bench.write_readme_section(readme, "model_cnn cpu", "### new report\n| a |")
    assert readme.read_text() == before.replace("old table", "### new report\n| a |")
    with pytest.raises(ValueError, match=r"model_cifar10 cpu start.*found 0 and 0"):
        bench.write_readme_section(readme, "model_cifar10 cpu", "x")
    assert "new report" in readme.read_text()  # a refused write leaves the file as it was
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert readme.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_keras_side_writes_atomically_with_umask_permissions(tmp_path: Path) -> None:
    from torch_cnn.bench_keras import atomic_write_text

    out = tmp_path / "records.json"
    atomic_write_text(out, "[]\n")
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_text() == "[]\n" and out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["records.json"]


def test_parity_mode_forbids_tf32() -> None:
    parity = bench.parity_settings(torch.device("cuda"))
    fast = bench.fast_settings(torch.device("cpu"))
    assert parity.describe("train", 32)["tf32_on_cuda"] is False
    assert fast.describe("train", 256)["tf32_on_cuda"] is True
    saved = torch.backends.cudnn.allow_tf32
    with bench.tf32_allowed(False):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert torch.backends.cudnn.allow_tf32 == saved
