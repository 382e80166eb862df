"""One benchmark run: torch_cnn's measurements in this process, each Keras backend's in a
subprocess of its own (``python -m benchmarks.keras_side``), FLOP/s added to every record."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import KERAS_BACKENDS, KERAS_MODES
from benchmarks.hardware import cpu_peak, forward_flops
from benchmarks.torch_side import MODES, RunConfig, measure_torch
from torch_cnn.train import seeded_model

# The checkout's root: where ``benchmarks`` and ``keras_ref`` live, beside ``torch_cnn``.
REPO_ROOT = Path(__file__).resolve().parent.parent


def keras_available(framework: str) -> str | None:
    """None if ``framework``'s Keras can be imported, else why not (without importing it)."""
    needed = ["keras", "tensorflow"] if framework == "keras_tensorflow" else ["keras"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def keras_command(config: RunConfig, framework: str, out: Path) -> list[str]:
    """The command line of the Keras process for ``framework``, writing its records to ``out``."""
    backend = KERAS_BACKENDS[framework]
    return [
        sys.executable,
        "-m",
        "benchmarks.keras_side",
        f"--backend={backend}",
        f"--model={config.model}",
        f"--device={config.torch_device.type}",
        f"--modes={','.join(KERAS_MODES[backend])}",
        f"--train-batches={config.small_batch},{config.large}",
        f"--large-batch={config.large}",
        f"--images={config.images_per_repeat}",
        f"--repeats={config.repeats}",
        f"--warmup-steps={config.warmup_steps}",
        f"--threads={config.intra_op_threads}",
        f"--seed={config.seed}",
        f"--out={out}",
    ]


def measure_keras(config: RunConfig, framework: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``benchmarks.keras_side`` for ``framework`` in its own process; returns (records, notes)."""
    if reason := keras_available(framework):
        return [], [f"{framework}: skipped ({reason})"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["KERAS_BACKEND"] = KERAS_BACKENDS[framework]
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if config.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # Keras would take a GPU whenever it sees one
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        tail: collections.deque[str] = collections.deque(maxlen=20)
        with subprocess.Popen(
            keras_command(config, framework, out),
            cwd=REPO_ROOT,  # `-m benchmarks.keras_side` finds this checkout's, not the caller's
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stderr is not None
            for line in proc.stderr:  # progress lines pass through; keep the tail for errors
                tail.append(line.rstrip())
                if line.startswith("  "):
                    print(line, end="", file=sys.stderr, flush=True)
        if proc.returncode != 0 or not out.is_file():
            detail = " | ".join(tail) or "no output"
            return [], [f"{framework}: failed (exit {proc.returncode}): {detail}"]
        result = json.loads(out.read_text())
    return list(result["records"]), list(result["notes"])


def run(
    config: RunConfig, gemm: Mapping[str, float] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every record of one benchmark run, and notes on what was skipped or failed."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.torch_device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device")
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    for framework in config.frameworks:
        if framework != "torch_cnn":
            print(f"{framework} (own process)", file=sys.stderr, flush=True)
            recs, why = measure_keras(config, framework)
            records += recs
            notes += why
            continue
        for mode in MODES:
            settings = config.settings(mode)
            train_batches = dict.fromkeys((config.small_batch, config.large, settings.batch_size))
            for task, batch in [("infer", config.large), *(("train", b) for b in train_batches)]:
                print(f"  torch_cnn {mode} {task} batch {batch}", file=sys.stderr, flush=True)
                try:
                    records.append(measure_torch(config, settings, task, batch))
                except Exception as exc:  # one failed path must not lose the others' numbers
                    notes.append(f"torch_cnn {mode} {task} batch {batch}: failed: {exc!r}")
                    print(f"    failed: {exc!r}", file=sys.stderr, flush=True)
    add_flops(records, forward_flops(seeded_model(config.model, 0)), config.intra_op_threads, gemm)
    return records, notes


def add_flops(
    records: list[dict[str, Any]],
    flops_per_image: int,
    threads: int,
    gemm: Mapping[str, float] | None = None,
) -> None:
    """Add ``gflop_per_s`` and ``peak_gflop_per_s`` (with ``peak_basis``) to each record.

    ``flops_per_image`` is the forward pass's (training counts 3×). The peak is the measured
    matmul rate (``gemm``, per dtype) where given; else, on the CPU, the estimate of
    ``cpu_peak`` for ``threads`` cores.
    """
    estimate = cpu_peak(threads)
    for rec in records:
        per_image = flops_per_image * (3 if rec["task"] == "train" else 1)
        rec["gflop_per_s"] = rec["images_per_s"] * per_image / 1e9
        bf16 = rec.get("settings", {}).get("autocast") == "bfloat16"
        if gemm is not None:
            rec["peak_gflop_per_s"] = gemm["bf16" if bf16 else "fp32"]
            rec["peak_basis"] = f"measured {'bf16' if bf16 else 'fp32'} matmul"
        elif rec["device"] == "cpu" and estimate["fp32_gflops"]:
            rec["peak_gflop_per_s"] = estimate["bf16_gflops" if bf16 else "fp32_gflops"]
            rec["peak_basis"] = "estimate: " + estimate["basis"]
