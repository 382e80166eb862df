"""One benchmark run: the shared files first (``benchmarks.prepare``, a subprocess), torch_cnn's
rows in this process, each Keras backend's and onnxruntime's in subprocesses of their own
(``benchmarks.keras_side``, ``benchmarks.ort_side``), interleaved round by round, FLOP/s added
to every record.

A round times every row once: each torch_cnn row one repeat (its model and data set up before
the first round), then each other framework's process started afresh for one repeat of each of
its rows (warm-up and compilation again; the first round's are reported). Keras's rows swing
by ±30% between minutes on a shared machine: interleaved, a slow stretch slows every framework
alike, and each row's median over the rounds is what the tables show."""

from __future__ import annotations

import collections
import dataclasses
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

from benchmarks.common import KERAS_BACKENDS, KERAS_MODES, merge_rounds
from benchmarks.hardware import cpu_peak, forward_flops
from benchmarks.torch_side import MODES, TRAIN_MODES, RunConfig, TorchRow, load_model

# The checkout's root: where ``benchmarks`` and ``keras_ref`` live, beside ``torch_cnn``.
REPO_ROOT = Path(__file__).resolve().parent.parent


def keras_available(framework: str) -> str | None:
    """None if ``framework``'s Keras can be imported, else why not (without importing it)."""
    needed = ["keras", "tensorflow"] if framework == "keras_tensorflow" else ["keras"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def keras_command(
    config: RunConfig, framework: str, out: Path, prepared: Path | None = None, repeats: int = 1
) -> list[str]:
    """The command line of the Keras process for ``framework``, writing its records to ``out``:
    ``repeats`` repeats of each row (one per round, as the runner calls it)."""
    backend = KERAS_BACKENDS[framework]
    cmd = [
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
        f"--repeats={repeats}",
        f"--warmup-steps={config.warmup_steps}",
        f"--threads={config.intra_op_threads}",
        f"--seed={config.seed}",
        f"--out={out}",
        f"--latency-calls={config.latency_calls}",
        "--latency" if config.latency else "--no-latency",
    ]
    if prepared is not None:
        cmd.append(f"--prepared={prepared}")
        if backend == "tensorflow":  # the converted models against Keras on TensorFlow only
            cmd.append(f"--converted={','.join(config.converted)}")
    return cmd


def ort_command(config: RunConfig, out: Path, prepared: Path, repeats: int = 1) -> list[str]:
    """The command line of the onnxruntime process (``benchmarks.ort_side``)."""
    return [
        sys.executable,
        "-m",
        "benchmarks.ort_side",
        f"--prepared={prepared}",
        f"--models={','.join((config.model, *config.converted))}",
        f"--large-batch={config.large}",
        f"--images={config.images_per_repeat}",
        f"--repeats={repeats}",
        f"--warmup-steps={config.warmup_steps}",
        f"--threads={config.intra_op_threads}",
        f"--seed={config.seed}",
        f"--latency-calls={config.latency_calls}",
        f"--out={out}",
    ]


def prepare_command(config: RunConfig, out: Path, data_dir: str | None) -> list[str]:
    """The command line of ``benchmarks.prepare`` (Keras on TensorFlow with torch_cnn)."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.prepare",
        f"--models={','.join((config.model, *config.converted))}",
        f"--out={out}",
        f"--seed={config.seed}",
    ]
    return cmd + ([f"--data-dir={data_dir}"] if data_dir else [])


def _env(keras_backend: str | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_json_process(
    what: str, cmd: list[str], env: Mapping[str, str], out: Path
) -> tuple[dict[str, Any] | None, str]:
    """Run ``cmd`` (which writes JSON to ``out``), passing its progress lines through; returns
    (the JSON, or None on failure, and the tail of its error output)."""
    tail: collections.deque[str] = collections.deque(maxlen=20)
    with subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,  # `-m benchmarks.…` finds this checkout's, not the caller's
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
        return None, f"{what}: failed (exit {proc.returncode}): {detail}"
    return json.loads(out.read_text()), ""


def measure_keras(
    config: RunConfig, framework: str, prepared: Path | None = None, repeats: int | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``benchmarks.keras_side`` for ``framework`` in its own process; returns (records, notes)."""
    if reason := keras_available(framework):
        return [], [f"{framework}: skipped ({reason})"]
    env = _env(KERAS_BACKENDS[framework])
    if config.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # Keras would take a GPU whenever it sees one
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        cmd = keras_command(config, framework, out, prepared, repeats or config.repeats)
        result, why = run_json_process(framework, cmd, env, out)
    if result is None:
        return [], [why]
    return list(result["records"]), list(result["notes"])


def measure_ort(
    config: RunConfig, prepared: Path | None, repeats: int | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``benchmarks.ort_side`` in its own process; returns (records, notes)."""
    if config.device != "cpu":
        return [], ["onnxruntime: CPU only here (its CUDA provider is not benchmarked)"]
    if importlib.util.find_spec("onnxruntime") is None:
        return [], ["onnxruntime: skipped (onnxruntime not installed)"]
    if prepared is None:
        return [], ["onnxruntime: skipped (no ONNX export: the shared files need Keras)"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        cmd = ort_command(config, out, prepared, repeats or config.repeats)
        result, why = run_json_process("onnxruntime", cmd, _env(), out)
    if result is None:
        return [], [why]
    return list(result["records"]), list(result["notes"])


def prepare_files(
    config: RunConfig, out: Path, data_dir: str | None = None
) -> tuple[dict[str, Any] | None, list[str]]:
    """``benchmarks.prepare`` into ``out``: (its manifest, or None where it cannot run, notes)."""
    if reason := keras_available("keras_tensorflow"):
        return None, [
            f"shared weights: none ({reason}); torch_cnn runs seeded models, the converted "
            "models and onnxruntime are skipped"
        ]
    env = _env("tensorflow")
    env["CUDA_VISIBLE_DEVICES"] = ""
    manifest, why = run_json_process(
        "prepare", prepare_command(config, out, data_dir), env, out / "manifest.json"
    )
    if manifest is None:
        return None, [why]
    notes = [
        f"onnxruntime {name}: {entry['onnx_source']}"
        for name, entry in manifest["models"].items()
        if "torch.onnx" in str(entry.get("onnx_source"))
    ]
    return manifest, notes


def torch_rows(config: RunConfig, models: list[str]) -> tuple[list[TorchRow], list[str]]:
    """Every torch_cnn row of the run, set up and warmed up (a row that fails becomes a note)."""
    plan: list[tuple[str, str, str, int]] = []  # (model, mode, task, batch)
    for mode in MODES:
        settings = config.settings(mode)
        trains = dict.fromkeys((config.small_batch, config.large, settings.batch_size))
        plan.append((config.model, mode, "infer", config.large))
        if mode in TRAIN_MODES:
            plan += [(config.model, mode, "train", b) for b in trains]
        if config.latency and mode in ("default", "nchw"):  # compiling pays at no batch 1
            plan.append((config.model, mode, "latency", 1))
    for name in models:
        for mode in ("default", "nchw", "compiled"):
            plan.append((name, mode, "infer", config.large))
            if config.latency and mode != "compiled":
                plan.append((name, mode, "latency", 1))
    rows, notes = [], []
    for name, mode, task, batch in plan:
        print(f"  torch_cnn {name} {mode} {task} batch {batch}", file=sys.stderr, flush=True)
        try:
            rows.append(TorchRow(config, config.settings(mode), task, batch, name))
        except Exception as exc:  # one failed path must not lose the others' numbers
            notes.append(f"torch_cnn {name} {mode} {task} batch {batch}: failed: {exc!r}")
            print(f"    failed: {exc!r}", file=sys.stderr, flush=True)
    return rows, notes


def run(
    config: RunConfig,
    gemm: Mapping[str, float] | None = None,
    *,
    data_dir: str | None = None,
    keep: Path | None = None,
) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Every record of one benchmark run (rows merged over ``config.repeats`` interleaved
    rounds), notes on what was skipped or failed, and what the rows shared (``benchmarks.prepare``'s
    manifest, ``{}`` without one). ``keep``: a directory to leave the shared files in (else a
    temporary one). Each record carries ``flops_per_image``, its model's forward FLOPs."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = config.torch_device
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no CUDA device")
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        manifest = None
        wants_files = any(f != "torch_cnn" for f in config.frameworks) or config.converted
        if wants_files:
            print("shared weights (benchmarks.prepare)", file=sys.stderr, flush=True)
            manifest, why = prepare_files(config, folder, data_dir)
            notes += why
        prepared = folder if manifest is not None else None
        config = dataclasses.replace(config, prepared=prepared)
        converted = [m for m in config.converted if manifest and m in manifest["models"]]
        rows: list[TorchRow] = []
        if "torch_cnn" in config.frameworks:
            rows, why = torch_rows(config, converted)
            notes += why
        rounds: list[list[dict[str, Any]]] = []
        once: set[str] = set()  # notes said once, not once per round
        for r in range(config.repeats):
            print(f"round {r + 1}/{config.repeats}", file=sys.stderr, flush=True)
            for row in rows:
                row.repeat()
            this_round: list[dict[str, Any]] = []
            for framework in config.frameworks:
                if framework == "torch_cnn":
                    continue
                if framework == "onnxruntime":
                    recs, why = measure_ort(config, prepared, repeats=1)
                else:
                    recs, why = measure_keras(config, framework, prepared, repeats=1)
                this_round += recs
                for n in why:
                    if n not in once:
                        once.add(n)
                        notes.append(n)
            rounds.append(this_round)
        records = [row.record() for row in rows] + merge_rounds(rounds)
        flops = {}
        for name in dict.fromkeys(r["model"] for r in records):
            flops[name] = forward_flops(load_model(config, name, torch.device("cpu")))
    add_flops(records, flops, config.intra_op_threads, gemm)
    return records, notes, manifest or {}


def add_flops(
    records: list[dict[str, Any]],
    flops_per_image: int | Mapping[str, int],
    threads: int,
    gemm: Mapping[str, float] | None = None,
) -> None:
    """Add ``gflop_per_s`` and ``peak_gflop_per_s`` (with ``peak_basis``) to each record.

    ``flops_per_image`` is the forward pass's (training counts 3×), one number or one per
    model (by the records' ``model``). The peak is the measured
    matmul rate (``gemm``, per dtype) where given; else, on the CPU, the estimate of
    ``cpu_peak`` for ``threads`` cores.
    """
    estimate = cpu_peak(threads)
    for rec in records:
        flops = (
            flops_per_image if isinstance(flops_per_image, int) else flops_per_image[rec["model"]]
        )
        rec["flops_per_image"] = flops
        per_image = flops * (3 if rec["task"] == "train" else 1)
        rec["gflop_per_s"] = rec["images_per_s"] * per_image / 1e9
        bf16 = rec.get("settings", {}).get("autocast") == "bfloat16"
        if gemm is not None:
            rec["peak_gflop_per_s"] = gemm["bf16" if bf16 else "fp32"]
            rec["peak_basis"] = f"measured {'bf16' if bf16 else 'fp32'} matmul"
        elif rec["device"] == "cpu" and estimate["fp32_gflops"]:
            rec["peak_gflop_per_s"] = estimate["bf16_gflops" if bf16 else "fp32_gflops"]
            rec["peak_basis"] = "estimate: " + estimate["basis"]
