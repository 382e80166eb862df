"""Tests of the benchmark (``benchmarks/``, run as ``torch-cnn bench``).

Its helpers are checked against hand-computed cases (throughput statistics, tables, target
lines, README blocks, option parsing); the slow tests run every path for a few steps and check
that each writes sound records (not what the numbers are: the benchmark is not a test).
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import benchmarks
import benchmarks.cli
from benchmarks import (
    accuracy,
    common,
    converted,
    cuda_graph,
    keras_side,
    ort_side,
    report,
    runner,
    torch_side,
)
from benchmarks.common import RECORD_KEYS
from torch_cnn import cli as torch_cnn_cli
from torch_cnn import data
from torch_cnn.cli import bench as cli_bench
from torch_cnn.optim import KerasAdam
from torch_cnn.train import evaluate, fit, seeded_model

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")

# model_cnn compiles fastest; batch 8 and 16 images per repeat keep each path to a few steps;
# no converted models (they have their own test).
QUICK = ["--quick", "--model", "model_cnn", "--batch-size", "8", "--large-batch", "16"]
QUICK += ["--images", "32", "--converted", ""]


# ---------------------------------------------------------------------------------------------
# Every path runs (slow: real measurements)


def _bench_via_subcommand(argv: list[str]) -> int:
    """Run ``bench`` as ``torch_cnn.cli.build_parser`` does: through ``add_command``."""
    parser = argparse.ArgumentParser(prog="torch-cnn")
    benchmarks.cli.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *argv])
    status: int = args.func(args)
    return status


def _check_records(
    records: list[dict[str, Any]],
    expected: set[tuple[str, str, str, int]],
    model: str = "model_cnn",
) -> None:
    got = {(r["framework"], r["mode"], r["task"], r["batch_size"]) for r in records}
    assert got == expected
    for r in records:
        assert set(RECORD_KEYS) <= set(r), sorted(set(RECORD_KEYS) - set(r))
        assert r["model"] == model
        for key in ("images_per_s", "images_per_s_min", "images_per_s_max", "peak_memory_mb"):
            assert math.isfinite(r[key]) and r[key] > 0, (key, r)
        assert r["compile_s"] >= 0
        assert r["repeats"] == len(r["seconds"]) == 2  # --quick's: two interleaved rounds
        # --images 32 rounded up to whole batches of 8 or 16: 32 either way; latency: 1 image.
        images = 1 if r["task"] == "latency" else 32
        assert r["images_per_repeat"] == images
        assert r["images_per_s"] == pytest.approx(
            common.throughput(r["seconds"], images)["images_per_s"], rel=1e-4
        )
        if r["task"] == "latency":  # µs per call: over the repeats, each a median of 5 calls
            us = sorted(1e6 * s for s in r["seconds"])
            assert r["latency_us"] == pytest.approx((us[0] + us[1]) / 2, abs=1e-3)
            assert (r["latency_us_min"], r["latency_us_max"]) == pytest.approx(us, abs=1e-3)
            assert r["calls_per_repeat"] == benchmarks.cli.QUICK_LATENCY_CALLS
        assert r["gflop_per_s"] > 0


@pytest.mark.slow
def test_torch_cnn_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bench.json"
    argv = [*QUICK, "--frameworks", "torch_cnn", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["torch-cnn", "bench", *argv])  # what the report quotes
    assert _bench_via_subcommand(argv) == 0
    records = json.loads(out.read_text())
    _check_records(
        records,
        {
            ("torch_cnn", mode, task, batch)
            for mode in ("default", "nchw", "fast")
            for task, batch in (("infer", 16), ("train", 8), ("train", 16))
        }
        | {("torch_cnn", mode, "latency", 1) for mode in ("default", "nchw")}
        | {("torch_cnn", "compiled", "infer", 16)},
    )
    fast = [r for r in records if r["mode"] == "fast"]
    default = [r for r in records if r["mode"] == "default"]
    nchw = [r for r in records if r["mode"] == "nchw"]
    assert all(r["settings"]["memory_format"] == "channels_last" for r in fast)
    assert all(r["settings"]["autocast"] is None for r in default + nchw)
    assert {r["settings"]["model_memory_format"] for r in default} == {"auto"}
    assert {r["settings"]["model_memory_format"] for r in nchw} == {"contiguous"}
    assert all(r["settings"].get("optimizer") in (None, "keras_adam") for r in default)
    assert all(r["peak_gflop_per_s"] > 0 for r in records)
    assert all("max_abs_diff" not in r for r in records)  # no Keras: no shared weights
    assert {r["command"] for r in records} == {shlex.join(["torch-cnn", "bench", *argv])}
    report_text = capsys.readouterr().out
    assert "| torch_cnn | default | model_cnn | train | 8 |" in report_text
    assert "| torch_cnn | nchw | model_cnn |" in report_text  # the latency table
    assert (
        "default train @8 vs Keras-TF fit @8 (its best mode, steps_per_execution included): "
        "not measured"
    ) in report_text


@pytest.mark.slow
def test_keras_and_onnxruntime_paths(keras: ModuleType, tmp_path: Path) -> None:
    """Keras on both backends and onnxruntime, on the shared weights (benchmarks.prepare):
    every row's outputs within the float32 parity bar of Keras's."""
    out = tmp_path / "bench.json"
    frameworks = "keras_tensorflow,keras_torch,onnxruntime"
    argv = [*QUICK, "--frameworks", frameworks, "--json", str(out), "--keep-files", str(tmp_path)]
    assert benchmarks.cli.main(argv) == 0
    expected = {
        (framework, mode, task, batch)
        for framework, modes in (
            ("keras_tensorflow", ("default", "xla", "multistep")),
            ("keras_torch", ("default",)),
        )
        for mode in modes
        for task, batch in (("infer", 16), ("train", 8), ("train", 16))
    } | {
        (framework, call, "latency", 1)
        for framework in ("keras_tensorflow", "keras_torch")
        for call in common.KERAS_LATENCY_CALLS
    }
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    if has_ort:
        expected |= {
            ("onnxruntime", "default", "infer", 16),
            ("onnxruntime", "default", "latency", 1),
        }
    records = json.loads(out.read_text())
    _check_records(records, expected)
    assert {r["versions"]["keras"] for r in records if "keras" in r["framework"]} == {
        keras.__version__
    }
    for r in records:
        if r["task"] != "train":
            assert 0 <= r["max_abs_diff"] <= 1e-5, r  # the same weights in every framework
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["models"]) == {"model_cnn"}
    assert manifest["models"]["model_cnn"]["onnx_source"] == "keras export (tf2onnx)"


@pytest.mark.slow
@pytest.mark.cuda
def test_cuda_paths(cuda_device: str, tmp_path: Path) -> None:
    """On a GPU: the CUDA-graph training step and the compiled inference run too."""
    out = tmp_path / "bench.json"
    argv = [*QUICK, "--device", cuda_device, "--frameworks", "torch_cnn", "--json", str(out)]
    assert benchmarks.cli.main(argv) == 0
    records = json.loads(out.read_text())
    assert all(r["device"] == "cuda" and r["memory_kind"] == "cuda_max_allocated" for r in records)
    fast_train = [r for r in records if r["mode"] == "fast" and r["task"] == "train"]
    assert fast_train and all(r["settings"]["cuda_graphs"] for r in fast_train)


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_records_and_the_readme_block(tmp_path: Path) -> None:
    """scripts/gpu_check.sh on the CPU (--dry-run): every step runs, and OUT holds what a GPU
    run leaves there (the device, the CUDA tests' log, the JSON records, the README block)."""
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", str(out)],
        cwd=tmp_path,  # the script finds the checkout itself
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (out / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary] == [
        "device", "cuda-tests", "benchmark", "gpu_check"
    ]  # fmt: skip
    assert all(": exit 0," in line for line in summary[:3]), summary
    assert "tests collected" in (out / "pytest_cuda.log").read_text()  # collected, not run
    records = json.loads((out / "model_cnn_cpu.json").read_text())
    assert {r["framework"] for r in records} == {"torch_cnn"}
    assert {r["mode"] for r in records} == {"default", "nchw", "compiled", "fast"}
    readme = (out / "README.md").read_text()
    start, end = "<!-- bench model_cnn cpu start -->", "<!-- bench model_cnn cpu end -->"
    block = readme[readme.index(start) + len(start) : readme.index(end)]
    assert "### `model_cnn` on cpu" in block and "| torch_cnn | default | model_cnn |" in block
    assert block.strip() == (out / "benchmark.md").read_text().strip()


def test_gpu_check_refuses_bad_arguments(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "usage: bash scripts/gpu_check.sh" in proc.stderr


@pytest.mark.cuda
def test_cuda_graph_trainer_trains_the_given_model(cuda_device: str) -> None:
    """Capture's warm-up steps are undone: the first replayed epoch starts from the given weights."""
    model = seeded_model("model_cnn", 0, device=cuda_device)
    before = [p.detach().clone() for p in model.parameters()]
    x, y = (
        torch.rand(64, 3, 32, 32, device=cuda_device),
        torch.randint(0, 10, (64,), device=cuda_device),
    )
    settings = torch_side.fast_settings(torch.device(cuda_device), 16)
    trainer = torch_side.graph_trainer(model, x, y, settings, 16)
    assert all(torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))
    trainer.epoch(64, torch.Generator(device=cuda_device).manual_seed(0))
    torch.cuda.synchronize()
    assert not any(torch.equal(p, p0) for p, p0 in zip(model.parameters(), before, strict=True))


def test_cuda_graph_trainer_refuses_an_optimizer_that_cannot_be_captured() -> None:
    model = seeded_model("model_cnn", 0)
    x, y = torch.zeros(16, 3, 32, 32), torch.zeros(16, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"capturable=True.*received KerasAdam"):
        cuda_graph.CudaGraphTrainer(model, x, y, KerasAdam(model.parameters()), 8)
    adam = torch.optim.Adam(model.parameters(), capturable=False)
    with pytest.raises(ValueError, match=r"received Adam with capturable=False"):
        cuda_graph.CudaGraphTrainer(model, x, y, adam, 8)


# ---------------------------------------------------------------------------------------------
# The Keras side stays torch-free; common.py is standard library only


def _non_stdlib_imports(source: str, allowed: tuple[str, ...] = ()) -> set[str]:
    """Top-level names of the modules ``source`` imports (anywhere) outside the stdlib."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {
        n
        for n in names
        if n.split(".")[0] not in sys.stdlib_module_names | {"__future__"} and n not in allowed
    }


def test_common_imports_only_the_standard_library() -> None:
    assert _non_stdlib_imports("import numpy as np\nfrom torch import nn\nimport os") == {
        "numpy",
        "torch",
    }  # the check itself catches what it must
    assert _non_stdlib_imports(Path(common.__file__).read_text()) == set()
    assert _non_stdlib_imports(Path(benchmarks.__file__).read_text()) == set()


def test_keras_side_imports_neither_torch_cnn_nor_torch_at_load() -> None:
    source = Path(keras_side.__file__).read_text()
    every = _non_stdlib_imports(source, allowed=("benchmarks.common",))
    # Inside functions: numpy, Keras, keras_ref, TensorFlow, and torch on Keras's torch backend.
    assert every == {"numpy", "keras", "keras_ref", "tensorflow", "torch"}
    module_level = [n for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert (
        _non_stdlib_imports(
            ast.unparse(ast.Module(body=module_level, type_ignores=[])),
            allowed=("benchmarks.common",),
        )
        == set()
    )


def test_onnxruntime_side_imports_neither_torch_nor_keras() -> None:
    """onnxruntime's process: numpy and onnxruntime (by name, in a function), nothing else."""
    source = Path(ort_side.__file__).read_text()
    assert _non_stdlib_imports(source, allowed=("benchmarks.common",)) == {"numpy"}
    assert 'import_module("onnxruntime")' in source


def test_converted_imports_nothing_at_load() -> None:
    """The Keras process and ``benchmarks.prepare`` load it: Keras comes in as an argument."""
    source = Path(converted.__file__).read_text()
    module_level = [n for n in ast.parse(source).body if isinstance(n, ast.Import | ast.ImportFrom)]
    top = _non_stdlib_imports(ast.unparse(ast.Module(body=module_level, type_ignores=[])))
    assert top == set()
    assert _non_stdlib_imports(source) == {"keras_ref", "keras_ref.models", "keras_ref.weights"}


def test_merge_rounds_on_hand_computed_records() -> None:
    """Two rounds of one repeat each become one record: the repeats in round order, the
    statistics recomputed (latency rows in µs per call), the first round's compile time, the
    highest peak memory and max |Δ|."""

    def rec(task: str, s: float, peak: float, diff: float) -> dict[str, Any]:
        images = 1 if task == "latency" else 100
        return common.record(
            framework="onnxruntime", mode="default", model="m", task=task,
            batch_size=1 if task == "latency" else 50, device="cpu", seconds=[s],
            images_per_repeat=images, peak_memory_mb=peak, compile_s=s, max_abs_diff=diff,
        )  # fmt: skip

    rounds = [
        [rec("infer", 2.0, 10.0, 1e-7), rec("latency", 0.0004, 10.0, 2e-7)],
        [rec("infer", 0.5, 30.0, 3e-7), rec("latency", 0.0001, 5.0, 1e-7)],
        [rec("infer", 1.0, 20.0, 2e-7), rec("latency", 0.0002, 5.0, 1e-7)],
    ]
    infer, latency = common.merge_rounds(rounds)
    assert infer["seconds"] == [2.0, 0.5, 1.0] and infer["rounds"] == infer["repeats"] == 3
    assert (infer["images_per_s"], infer["images_per_s_min"], infer["images_per_s_max"]) == (
        100.0,
        50.0,
        200.0,
    )
    assert (infer["compile_s"], infer["peak_memory_mb"], infer["max_abs_diff"]) == (
        2.0,
        30.0,
        3e-7,
    )
    assert (latency["latency_us"], latency["latency_us_min"], latency["latency_us_max"]) == (
        200.0,
        100.0,
        400.0,
    )
    assert latency["images_per_s"] == pytest.approx(5000.0)
    with pytest.raises(ValueError, match="task must be one of"):
        rec("predict", 1.0, 1.0, 0.0)


# Run in a fresh process: torch and torch_cnn made unimportable (None in sys.modules, Python's
# own "not installed"), then the Keras side's quick mode on TensorFlow.
_NO_TORCH = """
import json, sys
sys.modules["torch"] = None
sys.modules["torch_cnn"] = None
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("the shim did not make torch unimportable")
from benchmarks import keras_side
status = keras_side.main(sys.argv[1:])
loaded = [m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("torch", "torch_cnn")]
print(json.dumps(loaded))
sys.exit(status)
"""


@pytest.mark.slow
def test_keras_side_runs_without_torch(keras: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "keras.json"
    argv = ["--backend", "tensorflow", "--model", "model_cnn", "--quick", "--modes", "default"]
    argv += ["--train-batches", "8", "--large-batch", "16", "--images", "32", "--out", str(out)]
    env = dict(os.environ, KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    result = json.loads(out.read_text())
    assert result["notes"] == []
    got = [(r["framework"], r["mode"], r["task"], r["batch_size"]) for r in result["records"]]
    assert got == [
        ("keras_tensorflow", "default", "infer", 16),
        ("keras_tensorflow", "default", "train", 8),
        ("keras_tensorflow", "predict_on_batch", "latency", 1),
        ("keras_tensorflow", "model(x)", "latency", 1),
    ]
    for r in result["records"]:
        images = 1 if r["task"] == "latency" else 32
        assert r["repeats"] == common.QUICK["repeats"] and r["images_per_repeat"] == images
        assert "torch" not in r["versions"]


# ---------------------------------------------------------------------------------------------
# common: throughput, records, round_up, atomic writes


def test_throughput_on_known_timings() -> None:
    # 100 images in 0.5 s, 0.25 s, 1 s: 200, 400, 100 images/s.
    assert common.throughput([0.5, 0.25, 1.0], 100) == {
        "images_per_s": 200.0,
        "images_per_s_min": 100.0,
        "images_per_s_max": 400.0,
    }
    # An even count: the median is the mean of the middle two rates, (20 + 40) / 2.
    assert common.throughput([1.0, 2.0, 4.0, 8.0], 80)["images_per_s"] == 30.0
    for bad in ([], [1.0, 0.0], [-1.0]):
        with pytest.raises(ValueError, match="need positive repeat times"):
            common.throughput(bad, 10)


def test_record_puts_the_schema_first_and_rounds() -> None:
    rec = common.record(
        framework="torch_cnn",
        mode="default",
        model="model_cnn",
        task="infer",
        batch_size=16,
        device="cpu",
        seconds=[0.1234567891234, 0.2],
        images_per_repeat=32,
        peak_memory_mb=123.456,
        compile_s=1.5,
    )
    assert tuple(rec)[: len(RECORD_KEYS)] == RECORD_KEYS
    assert rec["images_per_s"] == pytest.approx((32 / 0.1234567891234 + 32 / 0.2) / 2)
    # Seconds to the nanosecond: a latency repeat is tens of µs.
    assert (rec["peak_memory_mb"], rec["seconds"], rec["repeats"]) == (
        123.5,
        [0.123456789, 0.2],
        2,
    )
    assert rec["compile_s"] == 1.5
    with pytest.raises(ValueError, match="received task='fit'"):
        common.record(**{**rec, "task": "fit", "seconds": [1.0]})


def test_round_up() -> None:
    assert [common.round_up(n, 32) for n in (0, 1, 31, 32, 33, 1000, 1024)] == [
        0,
        32,
        32,
        32,
        64,
        1024,
        1024,
    ]
    assert common.round_up(50_000, 500) == 50_000 and common.round_up(4096, 500) == 4500
    with pytest.raises(ValueError, match="received batch_size=0"):
        common.round_up(10, 0)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_atomic_json_write_has_umask_permissions_and_refuses_nan(tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    common.atomic_write_json(out, [{"a": 1}])
    assert out.read_text() == '[\n  {\n    "a": 1\n  }\n]\n'
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600
    with pytest.raises(ValueError, match="Out of range float"):
        common.atomic_write_json(out, [{"a": math.nan}])
    assert json.loads(out.read_text()) == [{"a": 1}]  # the old file stays, no temporary left
    assert [p.name for p in tmp_path.iterdir()] == ["records.json"]


# ---------------------------------------------------------------------------------------------
# torch_side: settings, overrides, the run's configuration


def test_settings_refuse_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="capturable optimizer"):
        torch_side.Settings("fast", 256, optimizer="keras_adam", cuda_graphs=True)
    with pytest.raises(ValueError, match="batch_size must be positive; received 0"):
        torch_side.Settings("fast", 0)
    with pytest.raises(ValueError, match="received 'sgd'"):
        torch_side.Settings("fast", 32, optimizer="sgd")
    with pytest.raises(ValueError, match="received mode='turbo'"):
        torch_side.Settings("turbo", 32)


def test_learning_rate_scales_with_the_square_root_of_the_batch() -> None:
    fast = torch_side.Settings("fast", 512, scale_lr=True)
    assert fast.lr(512) == pytest.approx(4e-3)  # 1e-3 × √(512 / 32)
    assert fast.lr(32) == 1e-3
    assert torch_side.Settings("default", 512).lr(512) == 1e-3


def test_the_modes_are_the_default_the_plain_nchw_path_and_fast() -> None:
    config = torch_side.RunConfig()
    default, nchw, fast = (config.settings(m) for m in torch_side.TRAIN_MODES)
    assert torch_side.MODES == ("default", "nchw", "compiled", "fast")
    compiled = config.settings("compiled")
    assert (compiled.memory_format, compiled.compile_infer, compiled.bf16) == ("auto", True, False)
    assert not compiled.tf32 and "compiled" not in torch_side.TRAIN_MODES
    assert (default.memory_format, default.channels_last, default.bf16) == ("auto", False, False)
    assert (nchw.memory_format, nchw.channels_last, nchw.bf16) == ("contiguous", False, False)
    assert (default.optimizer, nchw.optimizer) == ("keras_adam", "keras_adam")
    assert not (default.tf32 or nchw.tf32) and fast.tf32
    assert default.describe("infer", 256)["model_memory_format"] == "auto"


def test_parse_overrides() -> None:
    assert torch_side.parse_overrides("") == {}
    assert torch_side.parse_overrides(" compile_mode=max-autotune , cuda_graphs=1 ") == {
        "compile_mode": "max-autotune",
        "cuda_graphs": True,
    }
    bad = {
        "bf16": "expected KEY=VALUE with KEY one of batch_size, optimizer",
        "nope=1": "received 'nope=1'",
        "mode=fast": "received 'mode=fast'",  # the mode is not a setting of the mode
        "bf16=yes": "bf16 takes true or false; received 'yes'",
        "batch_size=big": "batch_size takes an integer; received 'big'",
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            torch_side.parse_overrides(text)


def test_fast_overrides_replace_the_batch() -> None:
    config = torch_side.RunConfig(
        fast_overrides=torch_side.parse_overrides("batch_size=128,bf16=false")
    )
    fast = config.settings("fast")
    assert (fast.batch_size, fast.bf16, fast.channels_last) == (128, False, True)
    assert config.settings("default").batch_size == config.large == 256
    with pytest.raises(ValueError, match="batch_size must be positive; received 0"):
        torch_side.RunConfig(fast_overrides={"batch_size": 0}).settings("fast")


def test_quick_sets_repeats_and_the_sizes_not_given() -> None:
    parser = argparse.ArgumentParser()
    benchmarks.cli.add_arguments(parser)
    quick = benchmarks.cli.config_from_args(
        parser.parse_args(["--quick", "--images", "32", "--repeats", "9"])
    )
    assert (quick.images_per_repeat, quick.large, quick.repeats, quick.warmup_steps) == (
        32,
        64,
        2,
        1,
    )
    full = benchmarks.cli.config_from_args(parser.parse_args(["--fast", "bf16=false"]))
    assert (full.images_per_repeat, full.large, full.repeats, full.warmup_steps) == (
        4096,
        256,
        5,
        5,
    )
    assert full.fast_overrides == {"bf16": False} and full.frameworks == common.FRAMEWORKS


def test_bad_options_are_refused_before_anything_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--fast", "bf16"], "argument --fast: expected KEY=VALUE"),
        (["--frameworks", "keras_jax"], "expected a comma-separated list of torch_cnn,"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            benchmarks.cli.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_measurement_runs_default_without_tf32_and_fast_with_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TF32 is off while the default mode is timed, on for fast mode, and restored after; the
    first call is compile_s, the second warmup_s, the rest the repeats."""
    seen: list[tuple[int, bool]] = []
    times = iter([0.5, 0.25, 0.5, 0.25, 0.125, 0.25, 0.5, 1.0])

    def fake_timed(self: torch_side.TorchRow, n: int) -> float:
        seen.append((n, torch.backends.cudnn.allow_tf32))
        assert torch.backends.cuda.matmul.allow_tf32 == torch.backends.cudnn.allow_tf32
        return next(times)

    monkeypatch.setattr(torch_side.TorchRow, "_timed", fake_timed)
    config = torch_side.RunConfig(model="model_cnn", images=20, repeats=2, warmup_steps=1)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    default = torch_side.measure_torch(config, torch_side.default_settings(CPU, 16), "infer", 16)
    fast = torch_side.measure_torch(config, torch_side.fast_settings(CPU, 8), "train", 8)
    # Warm-up calls on 1 batch (warmup_steps=1), repeats on the 20 images rounded up.
    assert seen == [
        (16, False), (16, False), (32, False), (32, False),
        (8, True), (8, True), (24, True), (24, True),
    ]  # fmt: skip
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == saved
    assert (default["images_per_repeat"], fast["images_per_repeat"]) == (32, 24)
    assert default["images_per_s"] == 96.0  # median of 32 / 0.5 and 32 / 0.25
    assert (default["compile_s"], default["warmup_s"]) == (0.5, 0.25)
    assert (fast["compile_s"], fast["warmup_s"], fast["seconds"]) == (0.125, 0.25, [0.5, 1.0])
    assert (default["settings"]["tf32_on_cuda"], fast["settings"]["tf32_on_cuda"]) == (False, True)


def test_latency_rows_time_one_image_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """A latency repeat is the median of ``calls_per_repeat`` single-image calls."""
    config = torch_side.RunConfig(model="model_cnn", repeats=3, latency_calls=7)
    calls: list[int] = []
    row = torch_side.TorchRow(config, config.settings("default"), "latency", 1)
    original = row._call

    def counting(n: int) -> object:
        calls.append(n)
        return original(n)

    row._call = counting
    for _ in range(config.repeats):
        row.repeat()
    rec = row.record()
    assert calls == [1] * 21 and rec["calls_per_repeat"] == 7
    assert (rec["task"], rec["batch_size"], rec["images_per_repeat"]) == ("latency", 1, 1)
    assert rec["latency_us"] == pytest.approx(1e6 * sorted(rec["seconds"])[1], abs=1e-3)


# ---------------------------------------------------------------------------------------------
# runner: the Keras process's command line, FLOP/s


def test_keras_command_round_trips_through_the_keras_side_parser(tmp_path: Path) -> None:
    config = torch_side.RunConfig(
        model="model_cnn",
        small_batch=8,
        large_batch=16,
        images=40,
        repeats=3,
        warmup_steps=2,
        threads=3,
        seed=4,
    )
    cmd = runner.keras_command(config, "keras_tensorflow", tmp_path / "k.json", tmp_path, 1)
    assert cmd[:3] == [sys.executable, "-m", "benchmarks.keras_side"]
    args = keras_side.parse_args(cmd[3:])
    assert (args.backend, args.model, args.device, args.modes) == (
        "tensorflow",
        "model_cnn",
        "cpu",
        ["default", "xla", "multistep"],
    )
    assert (args.train_batches, args.large_batch, args.images) == ([8, 16], 16, 40)
    assert (args.repeats, args.warmup_steps, args.threads, args.seed) == (1, 2, 3, 4)
    assert (args.prepared, args.converted, args.latency) == (
        str(tmp_path),
        ["residual_bn", "resnet_bn"],
        True,
    )
    torch_backend = keras_side.parse_args(runner.keras_command(config, "keras_torch", tmp_path)[3:])
    assert (torch_backend.modes, torch_backend.converted, torch_backend.prepared) == (
        ["default"],
        [],  # converted models against Keras on TensorFlow only
        None,
    )
    ort = runner.ort_command(config, tmp_path / "o.json", tmp_path)
    assert ort[:3] == [sys.executable, "-m", "benchmarks.ort_side"]
    ort_args = ort_side.parse_args(ort[3:])
    assert (ort_args.models, ort_args.large_batch, ort_args.threads, ort_args.repeats) == (
        ["model_cnn", "residual_bn", "resnet_bn"],
        16,
        3,
        1,  # one repeat per process: one per round
    )


def test_add_flops_counts_training_three_times_the_forward_pass() -> None:
    def rec(task: str, rate: float, autocast: str | None) -> dict[str, Any]:
        return {
            "task": task,
            "device": "cpu",
            "images_per_s": rate,
            "settings": {"autocast": autocast},
        }

    records = [rec("train", 1000.0, "bfloat16"), rec("infer", 2000.0, None)]
    runner.add_flops(records, 1_000_000, 2, {"fp32": 100.0, "bf16": 400.0})
    assert [r["gflop_per_s"] for r in records] == [3.0, 2.0]  # 1000 × 3 MFLOP, 2000 × 1 MFLOP
    assert [(r["peak_gflop_per_s"], r["peak_basis"]) for r in records] == [
        (400.0, "measured bf16 matmul"),
        (100.0, "measured fp32 matmul"),
    ]


# ---------------------------------------------------------------------------------------------
# report: the table, the targets, the accuracy lines, the README block


def _rec(
    framework: str, mode: str, task: str, batch: int, rate: float, **kw: Any
) -> dict[str, Any]:
    rec = {
        "framework": framework,
        "mode": mode,
        "model": "model_cifar10",
        "task": task,
        "batch_size": batch,
        "device": "cpu",
        "images_per_s": rate,
        "images_per_s_min": rate,
        "images_per_s_max": rate,
        "peak_memory_mb": 100.0,
        "images_per_repeat": 1 if task == "latency" else 4096,
    }
    if task == "latency":  # µs per call, as common.record computes it
        rec |= common.latency_stats([1 / rate])
    return rec | kw


def test_format_table_rows() -> None:
    fast_settings = {
        "autocast": "bfloat16",
        "memory_format": "channels_last",
        "optimizer": "adam_fused",
        "lr": 0.0028284271247461905,
        "compile": False,
        "cuda_graphs": True,
    }
    records = [
        _rec(
            "torch_cnn",
            "fast",
            "train",
            32,
            2500.0,
            images_per_s_min=50.0,
            images_per_s_max=12345.0,
            gflop_per_s=37.5,
            peak_gflop_per_s=150.0,
            peak_memory_mb=1536.4,
            compile_s=1.234,
            settings=fast_settings,
        ),
        _rec("keras_tensorflow", "xla", "train", 32, 1000.0, settings={"jit_compile": True}),
        _rec(
            "keras_tensorflow",
            "multistep",
            "train",
            32,
            800.0,
            settings={"jit_compile": "auto", "steps_per_execution": 16},
        ),
        _rec(
            "torch_cnn",
            "default",
            "infer",
            256,
            99.5,
            max_abs_diff=2.5e-7,
            settings={"compile": False, "model_memory_format": "auto"},
        ),
        _rec("onnxruntime", "default", "infer", 256, 199.0, settings={"onnx_source": "keras"}),
        _rec("torch_cnn", "default", "latency", 1, 2000.0),  # not a throughput row
    ]
    lines = report.format_table(records).splitlines()
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    assert lines[2:] == [
        "| torch_cnn | fast | model_cifar10 | train | 32 | 2,500 | 50.0 – 12,345 | 2.50× | – "
        "| 37.5 (25.0%) | – | 1,536 | 1.23 "
        "| bf16 autocast, channels_last (parameters too), adam_fused lr 0.0028, CUDA graph |",
        "| keras_tensorflow | xla | model_cifar10 | train | 32 | 1,000 | 1,000 – 1,000 | 1.00× "
        "| – | – | – | 100 | 0.00 | XLA (jit_compile=True) |",
        "| keras_tensorflow | multistep | model_cifar10 | train | 32 | 800 | 800 – 800 | 0.80× "
        "| – | – | – | 100 | 0.00 | compile defaults (jit_compile='auto'), steps_per_execution=16 |",
        "| torch_cnn | default | model_cifar10 | infer | 256 | 99.5 | 99.5 – 99.5 | – | 0.50× "
        "| – | 2.5e-07 | 100 | 0.00 | fp32, channels_last inside the model (default) |",
        "| onnxruntime | default | model_cifar10 | infer | 256 | 199 | 199 – 199 | – | 1.00× "
        "| – | – | 100 | 0.00 | CPUExecutionProvider, keras |",
    ]


def test_format_latency_table_rows() -> None:
    records = [
        _rec("torch_cnn", "default", "latency", 1, 4000.0, calls_per_repeat=400),
        _rec("keras_tensorflow", "predict_on_batch", "latency", 1, 1000.0),
        _rec("keras_tensorflow", "model(x)", "latency", 1, 100.0, settings={"call": "model(x)"}),
        _rec("onnxruntime", "default", "latency", 1, 8000.0),
        _rec("torch_cnn", "default", "infer", 256, 5000.0),  # not a latency row
    ]
    lines = report.format_latency_table(records).splitlines()
    assert len(lines) == 2 + 4
    assert lines[2] == (
        "| torch_cnn | default | model_cifar10 | 250 | 250 – 250 | 0.25× | 2.00× | 400 | – | fp32 |"
    )
    assert lines[4].startswith("| keras_tensorflow | model(x) | model_cifar10 | 10,000 ")
    assert "| 10.00× | 80.00× |" in lines[4]
    assert lines[4].endswith("| model(x), compile defaults (jit_compile=None) |")


def _targets_case() -> list[dict[str, Any]]:
    return [
        _rec("torch_cnn", "default", "train", 32, 2600.0),
        _rec("torch_cnn", "default", "infer", 256, 13000.0),
        _rec("torch_cnn", "default", "latency", 1, 4000.0),  # 250 µs
        _rec("torch_cnn", "nchw", "infer", 256, 99999.0),  # not the default: not a target row
        _rec("torch_cnn", "fast", "train", 256, 5000.0),
        _rec("keras_tensorflow", "default", "train", 32, 1000.0),
        _rec("keras_tensorflow", "multistep", "train", 32, 2000.0),
        _rec("keras_tensorflow", "xla", "train", 32, 800.0),
        _rec("keras_tensorflow", "default", "train", 256, 2400.0),
        _rec("keras_tensorflow", "default", "infer", 256, 10000.0),
        _rec("keras_tensorflow", "predict_on_batch", "latency", 1, 1000.0),  # 1,000 µs
        _rec("onnxruntime", "default", "infer", 256, 12000.0),
        _rec("onnxruntime", "default", "latency", 1, 10000.0),  # 100 µs
    ]


def test_target_report_compares_with_kerass_best_and_onnxruntime() -> None:
    records = _targets_case()
    lines = report.target_report(records, 32)
    assert len(lines) == 6  # no GPU epoch line on the CPU
    assert "13,000 / 10,000 img/s = **1.30×** (target ≥ 1.3×): met" in lines[0]
    assert "13,000 / 12,000 img/s = **1.08×** (target ≥ 1.1×): NOT met" in lines[1]
    assert "250 / 1,000 µs = **0.25×** (target ≤ 0.5×): met" in lines[2]
    assert "250 / 100 µs = **2.50×** (target ≤ 1×): NOT met" in lines[3]
    # Keras's best fit at batch 32 is multistep's 2,000 (steps_per_execution included).
    assert "2,600 / 2,000 img/s = **1.30×** (target ≥ 1.3×): met" in lines[4]
    assert "5,000 / 2,400 img/s = **2.08×** (target ≥ 2×): met for speed" in lines[5]
    assert "| 0.40× |" in report.format_table(records)  # xla's row against Keras's best at 32


def test_a_missed_target_says_how_close_to_the_limit_the_row_is() -> None:
    records = [
        _rec("torch_cnn", "default", "infer", 256, 10000.0, gflop_per_s=100.0),
        _rec("keras_tensorflow", "default", "infer", 256, 10000.0, gflop_per_s=100.0),
        _rec("torch_cnn", "default", "latency", 1, 2000.0, gflop_per_s=20.0),
        _rec("onnxruntime", "default", "latency", 1, 10000.0, gflop_per_s=100.0),
    ]
    # 1.3× Keras's 100 GFLOP/s is 130 GFLOP/s: more than a 120 GFLOP/s matmul, within 150.
    short = report.target_report(records, 32, gemm={"fp32": 120.0, "bf16": 600.0})
    assert short[0].endswith(
        "**1.00×** (target ≥ 1.3×): NOT met; the row runs at 100 GFLOP/s (83% of the best fp32 "
        "matmul here, 120 GFLOP/s); the target needs 130 GFLOP/s, more than it"
    )
    within = report.target_report(records, 32, gemm={"fp32": 150.0, "bf16": 600.0})[0]
    assert within.endswith("the target needs 130 GFLOP/s, within it")
    # Latency: 500 µs against 100 µs; ≤ 1× needs the 100 µs call, 100 GFLOP/s.
    assert short[3].endswith(
        "500 / 100 µs = **5.00×** (target ≤ 1×): NOT met; the row runs at 20.0 GFLOP/s (17% of "
        "the best fp32 matmul here, 120 GFLOP/s); the target needs 100 GFLOP/s, within it"
    )
    assert report.target_report(records, 32)[0].endswith("NOT met")  # without a measured matmul


def test_the_compiled_switch_is_held_to_the_inference_targets() -> None:
    records = [*_targets_case(), _rec("torch_cnn", "compiled", "infer", 256, 14000.0)]
    assert report.compiled_lines(records, "model_cifar10") == [
        "- compiled (opt-in torch.compile, float32) inference vs Keras-TF predict: 14,000 / "
        "10,000 img/s = **1.40×** (target ≥ 1.3×): met",
        "- compiled (opt-in torch.compile, float32) inference vs onnxruntime: 14,000 / 12,000 "
        "img/s = **1.17×** (target ≥ 1.1×): met",
    ]
    assert report.compiled_lines(_targets_case(), "model_cifar10") == []  # not measured


def test_converted_models_are_reported_against_keras_and_onnxruntime() -> None:
    records = [
        *_targets_case(),
        _rec("torch_cnn", "default", "infer", 256, 3000.0, model="resnet_bn"),
        _rec("keras_tensorflow", "default", "infer", 256, 2000.0, model="resnet_bn"),
        _rec("onnxruntime", "default", "infer", 256, 4000.0, model="resnet_bn"),
        _rec("torch_cnn", "default", "latency", 1, 1000.0, model="resnet_bn"),
        _rec("onnxruntime", "default", "latency", 1, 5000.0, model="resnet_bn"),
    ]
    assert report.converted_lines(records, "model_cifar10") == [
        "- resnet_bn (converted with from_keras): inference 1.50× Keras-TF, inference 0.75× "
        "onnxruntime, batch-1 latency 5.00× onnxruntime's"
    ]
    # The main model's targets are not confused by the other model's rows.
    assert report.target_report(records, 32, model="model_cifar10") == report.target_report(
        _targets_case(), 32
    )


def test_gpu_epoch_target() -> None:
    keras = _rec("keras_tensorflow", "default", "train", 32, 1000.0)
    epoch = _rec("torch_cnn", "fast", "train", 500, 1_000_000.0, device="cuda")
    epoch["images_per_repeat"] = 50_000
    line = report.target_report([keras, epoch], 32)[6]
    assert line == (
        "- fast train, one 50,000-image epoch on the GPU: **50.0 ms** "
        "(measured epochs of 50,000 images; target ≤ 50 ms): met"
    )
    slower = {**epoch, "images_per_s": 800_000.0, "images_per_repeat": 4500}
    assert report.target_report([keras, slower], 32)[6].endswith(
        "**62.5 ms** (from repeats of 4,500 images; target ≤ 50 ms): NOT met"
    )
    lost = {"fast_settings": {"batch_size": 500}, "difference_points": -3.0}
    assert report.target_report([keras, epoch], 32, lost)[6].endswith("NOT met (accuracy)")


def test_fast_target_needs_the_accuracy_check() -> None:
    records = [
        _rec("torch_cnn", "fast", "train", 256, 9000.0),
        _rec("keras_tensorflow", "default", "train", 32, 1000.0),
    ]
    unchecked = report.target_report(records, 32)[5]
    assert "**9.00×** (target ≥ 2×): met for speed; accuracy not checked" in unchecked
    checked = {"fast_settings": {"batch_size": 256}}
    held = report.target_report(records, 32, {**checked, "difference_points": -1.5})[5]
    assert held.endswith("met, accuracy -1.50 points")
    lost = report.target_report(records, 32, {**checked, "difference_points": -2.5})[5]
    assert lost.endswith("NOT met: accuracy -2.50 points")
    # The speed claimed is the checked recipe's (its batch), not another row's.
    other = report.target_report(
        records, 32, {"fast_settings": {"batch_size": 32}, "difference_points": 0}
    )
    assert other[5].startswith("- fast train (batch ?)") and other[5].endswith("not measured")


def test_accuracy_summary_and_lines_on_known_numbers() -> None:
    parity = accuracy.summarize([0.5, 0.6, 0.7], [2.0, 4.0, 3.0])
    fast = accuracy.summarize([0.55, 0.56, 0.57], [1.0, 1.0, 1.0])
    assert parity["mean"] == pytest.approx(0.6) and parity["sd"] == pytest.approx(0.1)
    assert fast["sd"] == pytest.approx(0.01)
    assert accuracy.summarize([0.42], [1.0])["sd"] == 0.0
    assert accuracy.difference_points(parity, fast) == pytest.approx(-4.0)
    result = {
        "default": parity,
        "fast": fast,
        "difference_points": accuracy.difference_points(parity, fast),
        "num_test": 1017,
        "num_train": 5085,
        "epochs": 10,
        "seeds": [0, 1, 2],
        "data_dir": "/data",
        "fast_settings": {"batch_size": 32, "autocast": None, "memory_format": "channels_last"},
    }
    assert report.format_accuracy(result) == [
        "",
        "Accuracy (test split, 1,017 images; 10 epochs on 5,085 training images from `/data`; "
        "seeds 0, 1, 2; mean ± sd):",
        "- default (fit's defaults, batch 32): 60.00 ± 10.00% (3.0 s per run)",
        "- fast (batch 32, fp32, channels_last (parameters too)): 56.00 ± 1.00% (1.0 s per run)",
        "- fast − default: **-4.00 points** (target: within 2 points below): NOT met",
    ]
    assert report.accuracy_holds({"difference_points": -2.0})
    assert not report.accuracy_holds({"difference_points": -2.01})


@pytest.mark.data
def test_accuracy_check_reports_what_fit_and_evaluate_give(cifar10_dir: Path) -> None:
    """The default mode's number is ``fit``'s defaults then ``evaluate``, run independently."""
    full = data.load_cifar10(cifar10_dir)
    # The first 640 training and 256 test images: the check's code paths, in seconds.
    ds = data.Cifar10(
        data.Split(full.train.images[:640], full.train.labels[:640]),
        data.Split(full.test.images[:256], full.test.labels[:256]),
        full.classes,
    )
    config = torch_side.RunConfig(model="model_cnn")
    result = accuracy.accuracy_check(config, cifar10_dir, dataset=ds, seeds=(0,), epochs=1)
    model = seeded_model("model_cnn", 0)
    fit(model, ds.train, epochs=1, seed=0, device=CPU, progress=False)
    assert result["default"]["test_accuracy"] == [evaluate(model, ds.test).accuracy]
    assert (result["num_train"], result["num_test"], result["seeds"]) == (640, 256, [0])
    assert result["fast_settings"]["batch_size"] == config.small_batch  # the recipe's, on the CPU
    assert len(result["fast"]["test_accuracy"]) == 1


def test_readme_section_is_replaced_only_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    before = (
        "# x\n<!-- bench model_cnn cpu start -->\nold table\n<!-- bench model_cnn cpu end -->\n"
        "<!-- bench model_cnn cuda start -->\ngpu\n<!-- bench model_cnn cuda end -->\n"
    )
    readme.write_text(before)
    report.write_readme_section(readme, "model_cnn cpu", "### new report\n| a |")
    assert readme.read_text() == before.replace("old table", "### new report\n| a |")
    with pytest.raises(ValueError, match=r"model_cifar10 cpu start.*found 0 and 0"):
        report.write_readme_section(readme, "model_cifar10 cpu", "x")
    assert "new report" in readme.read_text()  # a refused write leaves the file as it was
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    assert readme.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


def test_readme_markers_must_be_once_each_and_in_order(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    for text, found in (
        ("<!-- bench m cpu end -->\n<!-- bench m cpu start -->\n", "found 1 and 1"),
        (
            "<!-- bench m cpu start -->\n<!-- bench m cpu start -->\n<!-- bench m cpu end -->\n",
            "found 2 and 1",
        ),
    ):
        readme.write_text(text)
        with pytest.raises(ValueError, match=found):
            report.write_readme_section(readme, "m cpu", "new")
        assert readme.read_text() == text


# ---------------------------------------------------------------------------------------------
# torch-cnn bench outside a checkout


def test_torch_cnn_bench_without_the_repository_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # as in an installed wheel
    monkeypatch.setitem(sys.modules, "benchmarks.cli", None)
    for argv in (["bench"], ["bench", "--quick", "--model", "model_cnn"], ["bench", "--help"]):
        assert torch_cnn_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err == cli_bench.BENCH_NOT_INSTALLED + "\n"
        assert "benchmarks/" in err and "python -m benchmarks" in err


def test_a_benchmark_that_fails_to_load_is_not_called_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "benchmarks.cli")
    monkeypatch.setitem(sys.modules, "benchmarks.runner", None)  # a broken dependency inside
    with pytest.raises(ModuleNotFoundError, match=r"benchmarks\.runner"):
        torch_cnn_cli.build_parser()


# ---------------------------------------------------------------------------------------------
# The command's checks (issue 16: numbers and paths before minutes of timing; failed rows fail)


@pytest.mark.parametrize(
    "argv",
    [["--repeats", "0"], ["--images", "-5"], ["--batch-size", "0"], ["--threads", "x"],
     ["--warmup-steps", "-1"], ["--accuracy-seeds", "0"]],
)  # fmt: skip
def test_bad_numbers_are_refused_before_any_work(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        torch_cnn_cli.build_parser().parse_args(["bench", *argv])
    assert info.value.code == 2


def test_outputs_are_checked_before_any_timing(tmp_path: Path) -> None:
    from benchmarks.cli import cmd_bench

    parser = torch_cnn_cli.build_parser()
    for argv, match in (
        (["--json", str(tmp_path / "missing" / "x.json")], "not a writable directory"),
        (["--json", str(tmp_path)], "is a directory"),
        (["--readme", str(tmp_path / "README.md")], "does not exist"),
    ):
        with pytest.raises(SystemExit, match=match):
            cmd_bench(parser.parse_args(["bench", "--quick", *argv]))


def test_the_help_shows_no_markup() -> None:
    from benchmarks.cli import DESCRIPTION

    assert "``" not in DESCRIPTION and "torch-cnn bench" in DESCRIPTION


def test_a_failed_row_makes_the_command_fail(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row that could not be measured ends the command with status 1 (it printed and exited
    0 before), and the thread count the command set is put back."""
    from benchmarks import cli

    threads = torch.get_num_threads()

    def failing_run(config: Any, *args: Any, **kwargs: Any) -> Any:
        return [], ["torch_cnn model_cnn default infer batch 256: failed: RuntimeError('x')"], None

    monkeypatch.setattr(cli, "run", failing_run)
    monkeypatch.setattr(cli, "format_report", lambda *a, **k: "report\n")
    argv = ["bench", "--quick", "--model", "model_cnn", "--frameworks", "torch_cnn",
            "--converted", "", "--threads", "1"]  # fmt: skip
    assert cli.cmd_bench(torch_cnn_cli.build_parser().parse_args(argv)) == 1
    assert "1 path(s) failed" in capsys.readouterr().err
    assert torch.get_num_threads() == threads
