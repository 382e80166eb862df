"""onnxruntime's side of the benchmark, in a process of its own (imports neither torch nor Keras).

``benchmarks.runner`` runs it once per round::

    python -m benchmarks.ort_side --prepared DIR --models model_cifar10,resnet_bn --out ort.json

For every model in ``DIR/manifest.json`` with an ONNX file (``benchmarks.prepare``: Keras's
own export), on the CPU execution provider with ``--threads`` intra-op threads (graph
optimisations at onnxruntime's default, all):

- ``infer``: ``session.run`` over ``images`` random images in batches of ``large_batch``, every
  output copied into one result array (what Keras's ``predict`` returns);
- ``latency``: ``session.run`` on one image, the median µs of many calls per repeat.

Each record carries ``max_abs_diff``: the largest |Δ| of the session's outputs on the
prepared inputs against Keras's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    IMAGES_PER_REPEAT,
    LARGE_BATCH,
    REPEATS,
    WARMUP_STEPS,
    PeakRSS,
    atomic_write_json,
    latency_calls,
    median_call_s,
    record,
    round_up,
)

FRAMEWORK = "onnxruntime"


def _session(path: Path, threads: int) -> Any:
    ort = importlib.import_module("onnxruntime")  # untyped; imported only in this process
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure_model(
    name: str, folder: Path, entry: dict[str, Any], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """The infer and latency records of one prepared model."""
    import numpy as np

    session = _session(folder / entry["onnx"], args.threads)
    input_name = session.get_inputs()[0].name
    nchw = entry.get("onnx_layout") == "NCHW"
    io = np.load(folder / entry["io"])

    def run(x: Any) -> Any:
        return session.run(None, {input_name: x.transpose(0, 3, 1, 2).copy() if nchw else x})[0]

    delta = float(np.abs(run(io["inputs"]) - io["expected"]).max())
    batch = args.large_batch
    images = round_up(args.images, batch)
    x = np.random.default_rng(args.seed).random((images, 32, 32, 3), dtype=np.float32)
    out = np.empty((images, *io["expected"].shape[1:]), dtype=np.float32)

    def predict(n: int) -> None:
        for i in range(0, n, batch):
            out[i : i + batch] = run(x[i : i + batch])

    rss = PeakRSS()
    settings = {
        "provider": "CPUExecutionProvider",
        "onnx_source": entry.get("onnx_source"),
        "graph_optimization": "all (default)",
        "dtype": "float32",
    }
    common: dict[str, Any] = {"framework": FRAMEWORK, "mode": "default", "model": name}
    common["device"] = "cpu"
    common |= {"settings": settings, "max_abs_diff": delta, "memory_kind": "rss_peak"}
    warm = min(args.warmup_steps * batch, images)
    first = []
    for _ in range(2):
        t0 = time.perf_counter()
        predict(warm)
        first.append(time.perf_counter() - t0)
    rss.reset()
    seconds = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        predict(images)
        seconds.append(time.perf_counter() - t0)
    infer = record(
        **common,
        task="infer",
        batch_size=batch,
        seconds=seconds,
        images_per_repeat=images,
        peak_memory_mb=rss.peak_mb(),
        compile_s=round(first[0], 3),
        warmup_s=round(first[1], 3),
    )
    one = np.ascontiguousarray(x[:1])
    t0 = time.perf_counter()
    run(one)
    t1 = time.perf_counter()
    run(one)
    calls = latency_calls(time.perf_counter() - t1, args.latency_calls)
    rss.reset()
    lat = [median_call_s(lambda: run(one), calls) for _ in range(args.repeats)]
    latency = record(
        **common,
        task="latency",
        batch_size=1,
        seconds=lat,
        images_per_repeat=1,
        peak_memory_mb=rss.peak_mb(),
        compile_s=round(t1 - t0, 6),
        calls_per_repeat=calls,
    )
    return [infer, latency]


def run(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(args.prepared)
    manifest = json.loads((folder / "manifest.json").read_text())
    ort = importlib.import_module("onnxruntime")
    records, notes = [], []
    for name in args.models:
        entry = manifest["models"].get(name)
        if entry is None or not entry.get("onnx"):
            why = entry.get("onnx_note", "no ONNX file") if entry else "not prepared"
            notes.append(f"onnxruntime {name}: skipped ({why})")
            continue
        print(f"  onnxruntime {name}", file=sys.stderr, flush=True)
        for rec in measure_model(name, folder / name, entry, args):
            rec["threads"] = {"intra_op": args.threads, "inter_op": 1}
            rec["versions"] = {"onnxruntime": ort.__version__}
            records.append(rec)
    return {"records": records, "notes": notes}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ort_side", description=__doc__)
    p.add_argument("--prepared", required=True, help="benchmarks.prepare's directory")
    p.add_argument("--models", type=lambda s: s.split(","), required=True)
    p.add_argument("--large-batch", type=int, default=LARGE_BATCH["cpu"])
    p.add_argument("--images", type=int, default=IMAGES_PER_REPEAT["cpu"])
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--latency-calls", type=int, default=0, help="calls per latency repeat (0: auto)"
    )
    p.add_argument("--out", required=True, help="JSON file to write")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    atomic_write_json(args.out, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
