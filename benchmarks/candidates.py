"""Side by side: the candidate float32 inference paths for torch_cnn's default, with Keras and
onnxruntime on the same weights, in one process (``python -m benchmarks.candidates``).

This is the measurement that chose the default path (``KerasStyleNet.memory_format``); the
benchmark proper (``python -m benchmarks``) times what was chosen, each framework in a process
of its own. Here every candidate runs on the same weights as a seeded Keras model (ported with
``load_keras_weights``, or converted with ``from_keras``), and its output on real CIFAR-10 test
images (or seeded random ones) is compared with Keras's: a candidate is only worth its speed
within the float32 parity bar (1e-5).

For each model: images/s at batch 256 and µs per call at batch 1, each the median (and best)
over ``--rounds`` interleaved rounds (one round times every candidate once, in turn, so a
slow stretch of a shared machine hits all of them alike). Candidates:

- ``nchw``: ``memory_format="contiguous"``, the plain NCHW eager path (the old default);
- ``default (auto)``: ``memory_format="auto"``, the new default: channels_last inside the
  model for a batch through wide convolutions, NCHW for one image or narrow convolutions;
- ``channels_last``: ``memory_format="channels_last"``, the input converted inside the model
  whatever the batch and model;
- ``channels_last+weights``: the same with the parameters in channels_last too
  (``model.to(memory_format=torch.channels_last)``, what ``fit(channels_last=True)`` does);
- ``compile``: ``torch.compile`` of the channels_last model (one compiled graph per batch size);
- ``compile+freezing``: the same with Inductor's ``freezing`` (weights folded in as constants,
  oneDNN's fused and prepacked convolutions), valid only while the weights do not change;
- ``keras predict_on_batch`` and ``keras model(x)`` (TensorFlow backend), and ``onnxruntime``
  on Keras's own ONNX export (``model.export(path, format="onnx")``, through tf2onnx).

Compilation time (the first call, per batch size) is printed apart.

``--fit`` measures ``torch_cnn.train.fit`` instead, one epoch of ``--fit-images`` random
images at batch 32 per round, for the settings ``fit``'s defaults could take: the model's
default layout (channels_last inside model_cifar10, the parameters NCHW), the plain NCHW
path, ``fit(channels_last=True)`` (the parameters channels_last too), ``fit(compile=True)``,
and Keras's Adam against ``torch.optim.Adam``'s foreach kernels (not bit-exact with Keras:
what the exact optimizer costs).
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import torch_cnn

Call = Callable[[Any], Any]
BATCH = 256
LATENCY_CALLS = 200


def _torch_candidates(model: nn.Module, compile_: bool) -> dict[str, Call]:
    """The torch candidates, each a function of an NCHW float32 tensor (grad disabled)."""
    nchw = copy.deepcopy(model)
    setattr(nchw, "memory_format", "contiguous")  # noqa: B010  # KerasStyleNet / KerasGraph
    default = copy.deepcopy(model)
    setattr(default, "memory_format", "auto")  # noqa: B010
    forced = copy.deepcopy(model)
    setattr(forced, "memory_format", "channels_last")  # noqa: B010
    cl_weights = copy.deepcopy(forced).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    out: dict[str, Call] = {
        "nchw": nchw,
        "default (auto)": default,
        "channels_last": forced,
        "channels_last+weights": cl_weights,
    }
    if compile_:
        per_shape: dict[tuple[str, int], Call] = {}

        def compiled(kind: str) -> Call:
            def call(x: torch.Tensor) -> torch.Tensor:
                key = (kind, len(x))
                if key not in per_shape:  # one graph per batch size, as a user would see
                    options: dict[str, Any] = {"freezing": kind == "freezing"}
                    per_shape[key] = torch.compile(
                        copy.deepcopy(forced), dynamic=False, options=options
                    )
                result: torch.Tensor = per_shape[key](x)
                return result

            return call

        out["compile"] = compiled("default")
        out["compile+freezing"] = compiled("freezing")
    return out


def _keras_candidates(keras_model: Any, onnx_path: Path | None, threads: int) -> dict[str, Call]:
    out: dict[str, Call] = {
        "keras predict_on_batch": lambda x: keras_model.predict_on_batch(x),
        "keras model(x)": lambda x: keras_model(x, training=False),
    }
    if onnx_path is not None:
        ort = importlib.import_module("onnxruntime")  # untyped: kept Any

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        out["onnxruntime"] = lambda x: session.run(None, {name: x})[0]
    return out


def _as_numpy(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().numpy()
    return np.asarray(y)


CLOCK = time.perf_counter  # --cpu-time: time.process_time


def _time_one(call: Call, x: Any) -> float:
    t0 = CLOCK()
    call(x)
    return CLOCK() - t0


def _latency(call: Call, x: Any, calls: int) -> float:
    """Median seconds per call over ``calls`` calls."""
    return statistics.median(_time_one(call, x) for _ in range(calls))


def measure(
    name: str,
    model: nn.Module,
    keras_model: Any,
    images: np.ndarray,
    *,
    rounds: int,
    threads: int,
    compile_: bool,
    onnx: bool,
) -> list[str]:
    """Every candidate on ``images`` (NHWC float32, ``BATCH`` of them): the markdown rows."""
    x_nhwc = np.ascontiguousarray(images[:BATCH])
    x1_nhwc = np.ascontiguousarray(images[:1])
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()
    x1 = x[:1].clone()
    expected = np.asarray(keras_model.predict_on_batch(x_nhwc))  # also builds it (for export)
    onnx_path = None
    tmp = tempfile.TemporaryDirectory()
    if onnx:
        onnx_path = Path(tmp.name) / f"{name}.onnx"
        keras_model.export(str(onnx_path), format="onnx", verbose=False)
    cands: dict[str, tuple[Call, bool]] = {
        k: (c, True) for k, c in _torch_candidates(model, compile_).items()
    }
    cands |= {k: (c, False) for k, c in _keras_candidates(keras_model, onnx_path, threads).items()}
    inputs = {k: ((x, x1) if is_torch else (x_nhwc, x1_nhwc)) for k, (_, is_torch) in cands.items()}
    delta: dict[str, float] = {}
    first: dict[str, float] = {}
    rates: dict[str, list[float]] = {k: [] for k in cands}
    lat: dict[str, list[float]] = {k: [] for k in cands}
    with torch.inference_mode():
        for k, (call, _) in cands.items():
            big, one = inputs[k]
            t0 = time.perf_counter()
            y = call(big)
            call(one)
            first[k] = time.perf_counter() - t0
            delta[k] = float(np.abs(_as_numpy(y) - expected).max())
            for _ in range(3):
                call(big)
                call(one)
            print(f"  {name}: {k} ready ({first[k]:.1f} s)", file=sys.stderr, flush=True)
        for r in range(rounds):
            for k, (call, _) in cands.items():
                big, one = inputs[k]
                rates[k].append(BATCH / _time_one(call, big))
                lat[k].append(_latency(call, one, LATENCY_CALLS))
            print(f"  {name}: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    tmp.cleanup()
    base = statistics.median(rates["nchw"])
    rows = []
    for k in cands:
        med, lmed = statistics.median(rates[k]), statistics.median(lat[k])
        rows.append(
            f"| {name} | {k} | {med:,.0f} | {max(rates[k]):,.0f} | {med / base:.2f}× "
            f"| {1e6 * lmed:,.0f} | {1e6 * min(lat[k]):,.0f} | {delta[k]:.1e} | {first[k]:.1f} |"
        )
    return rows


def measure_fit(name: str, rounds: int, images: int, batch: int = 32) -> list[str]:
    """``fit``'s candidate settings for ``name``, interleaved: markdown rows."""
    from torch_cnn.optim import create_optimizer
    from torch_cnn.train import fit, seeded_model

    g = torch.Generator().manual_seed(0)
    x = torch.rand(images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (images,), generator=g)
    variants: dict[str, dict[str, Any]] = {
        "defaults (memory_format auto)": {},
        "plain NCHW (memory_format contiguous)": {"memory_format": "contiguous"},
        "channels_last=True (parameters too)": {"channels_last": True},
        "compile=True": {"compile": True},
        "torch Adam foreach (not Keras-exact)": {"optimizer": "torch_adam_foreach"},
    }
    runs: dict[str, Callable[[], object]] = {}
    first: dict[str, float] = {}
    for label, v in variants.items():
        model = seeded_model(name, 0)
        model.memory_format = v.get("memory_format", "auto")
        optimizer = create_optimizer(v.get("optimizer", "keras_adam"), model.parameters())

        def run(model: Any = model, optimizer: Any = optimizer, v: dict[str, Any] = v) -> object:
            return fit(
                model, (x, y), epochs=1, batch_size=batch, optimizer=optimizer, seed=0,
                channels_last=v.get("channels_last", False), compile=v.get("compile", False),
                progress=False,
            )  # fmt: skip

        t0 = time.perf_counter()
        run()
        first[label] = time.perf_counter() - t0
        runs[label] = run
        print(f"  fit {name}: {label} ready ({first[label]:.1f} s)", file=sys.stderr, flush=True)
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds):
        for label, epoch in runs.items():
            t0 = CLOCK()
            epoch()
            rates[label].append(images / (CLOCK() - t0))
        print(f"  fit {name}: round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    base = statistics.median(rates["defaults (memory_format auto)"])
    return [
        f"| {name} | {label} | {statistics.median(v):,.0f} | {max(v):,.0f} "
        f"| {statistics.median(v) / base:.2f}× | {first[label]:.1f} |"
        for label, v in rates.items()
    ]


def _images(n: int, seed: int) -> np.ndarray:
    """Real CIFAR-10 test images (NHWC, /255) where ``CIFAR10_DIR`` is set, else seeded ones."""
    if os.environ.get("CIFAR10_DIR"):
        from torch_cnn import data

        test = data.load_cifar10(data.resolve_data_dir(None)).test
        return np.ascontiguousarray(
            data.to_float(test.images[:n]).permute(0, 2, 3, 1).numpy(), dtype=np.float32
        )
    return np.random.default_rng(seed).random((n, 32, 32, 3), dtype=np.float32)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.candidates", description=__doc__)
    p.add_argument("--models", default="model_cifar10,residual_bn,resnet_bn")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-onnx", action="store_true")
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with the process's CPU time instead of the wall clock: steadier on a "
        "machine other jobs share (with --threads 1, the compute alone; with more threads it "
        "also counts the threads' spinning)",
    )
    p.add_argument("--fit", action="store_true", help="fit's candidate settings (batch 32)")
    p.add_argument("--fit-images", type=int, default=2048)
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.fit:
        rows = []
        for name in args.models.split(","):
            if name in torch_cnn.list_models():
                rows += measure_fit(name, args.rounds, args.fit_images)
        clock = "process CPU time" if args.cpu_time else "wall clock"
        print(
            f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds "
            f"({clock}); fit, batch 32, one epoch of {args.fit_images:,} random images a round\n"
        )
        print("| model | fit | img/s (median) | best | × defaults | first epoch s |")
        print("|---|---|---:|---:|---:|---:|")
        print("\n".join(rows))
        return 0
    import keras

    from benchmarks.converted import build_keras

    images = _images(BATCH, 0)
    rows = []
    for name in args.models.split(","):
        keras_model = build_keras(keras, name, seed=0)
        model = torch_cnn.from_keras(keras_model)  # a seed model comes back as its class
        rows += measure(
            name,
            model.eval(),
            keras_model,
            images,
            rounds=args.rounds,
            threads=args.threads,
            compile_=not args.no_compile,
            onnx=not args.no_onnx,
        )
    clock = "process CPU time" if args.cpu_time else "wall clock"
    print(
        f"torch {torch.__version__}, keras {keras.__version__}, {args.threads} threads, "
        f"{args.rounds} interleaved rounds ({clock}); batch {BATCH} and batch 1 (median of "
        f"{LATENCY_CALLS} calls per round)\n"
    )
    print(
        "| model | path | img/s @256 (median) | best | × nchw | µs @1 (median) | best "
        "| max \\|Δ\\| vs Keras | first calls s |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
