"""The Keras side of the benchmark: Keras 3's own ``fit`` and ``predict``, in a process of their own.

``benchmarks.runner`` runs this module once per Keras backend::

    python -m benchmarks.keras_side --backend tensorflow --model model_cifar10 \
        --train-batches 32,256 --out keras.json

so that TensorFlow's and PyTorch's thread pools never share a process and each framework's
peak memory is its own. ``KERAS_BACKEND`` is set from ``--backend`` before Keras is imported.
The module imports only the standard library and ``benchmarks.common`` at load time. It
never imports torch_cnn, and torch only on Keras's torch backend (to set its threads and read
its CUDA memory; Keras imports torch there itself): on TensorFlow the process holds no torch.

What is measured, for each Keras ``mode`` (``default``: ``model.compile``'s defaults, which on
TensorFlow means XLA only when a GPU is present; ``xla``: ``jit_compile=True``;
``multistep``: the defaults with ``steps_per_execution=16``):

- ``infer``: ``model.predict(x, batch_size=B, verbose=0)`` over ``images`` random images,
  once per repeat, timed by the wall clock around the call.
- ``train``: ``model.fit(x, y, batch_size=B, epochs=repeats, verbose=0)`` over ``images``
  random images and labels (shuffled every epoch, as ``fit`` does by default); each epoch is
  one repeat, timed by a callback from ``on_epoch_begin`` to ``on_epoch_end``. The model is
  compiled as the seeds compile it (``keras.optimizers.Adam(1e-3)``; categorical
  cross-entropy on one-hot labels for ``model_cnn``, sparse cross-entropy from logits for
  ``model_cifar10``, as ``scripts/train_keras.py``) with ``metrics=["accuracy"]``.

- ``latency`` (``default`` compile settings only): one image per call, the median µs of many
  calls per repeat, for Keras's two ways of running one batch: ``predict_on_batch(x)`` (mode
  ``predict_on_batch``) and calling the model, ``model(x, training=False)`` (mode ``model(x)``).

Before the timed repeats, one call on ``warmup_steps`` batches traces (and with XLA compiles)
the step: its time is ``compile_s``. A second such call is ``warmup_s``. Neither is counted.

With ``--prepared DIR`` (``benchmarks.prepare``'s files) every model is loaded from
``DIR/<model>/model.keras``, the weights every framework computes with, and each inference
record carries ``max_abs_diff`` against Keras on TensorFlow's outputs on the prepared inputs;
``--converted`` names more prepared models (the zoo's residual network and the like), timed for
inference and latency only. Without it the model is built with seeded weights.
The runner starts this process once per round, with one repeat per row, so that Keras's rows
interleave with the other frameworks' (they swing by ±30% from one minute to the next on a
shared machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import (
    IMAGES_PER_REPEAT,
    KERAS_BACKENDS,
    KERAS_LATENCY_CALLS,
    KERAS_MODES,
    LARGE_BATCH,
    MB,
    QUICK,
    REPEATS,
    WARMUP_STEPS,
    PeakRSS,
    atomic_write_json,
    latency_calls,
    median_call_s,
    record,
    round_up,
    rss_mb,
)

# ``multistep``: compile's ``steps_per_execution``, Keras's own answer to per-step overhead at
# small batches (this many steps per call of the compiled function).
STEPS_PER_EXECUTION = 16
NUM_CLASSES = 10
IMAGE_SHAPE_NHWC = (32, 32, 3)


class _Device:
    """Where Keras runs and how its peak memory is read (RSS on the CPU, allocator peak on a GPU)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.rss = PeakRSS()
        if backend == "tensorflow":
            import tensorflow as tf

            self.type = "cuda" if tf.config.list_physical_devices("GPU") else "cpu"
        else:
            import torch

            self.type = "cuda" if torch.cuda.is_available() else "cpu"
        self.memory_kind = "rss_peak" if self.type == "cpu" else "gpu_peak_allocated"

    def name(self) -> str:
        if self.type == "cpu":
            return f"cpu: {platform.machine()}"
        if self.backend == "tensorflow":
            import tensorflow as tf

            gpu = tf.config.list_physical_devices("GPU")[0]
            details = tf.config.experimental.get_device_details(gpu)
            return f"cuda: {details.get('device_name', gpu.name)}"
        import torch

        return f"cuda: {torch.cuda.get_device_name()}"

    def reset_peak(self) -> None:
        if self.type == "cpu":
            self.rss.reset()
        elif self.backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.reset_memory_stats("GPU:0")
        else:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float:
        if self.type == "cpu":
            self.memory_kind = self.rss.kind
            return self.rss.peak_mb()
        if self.backend == "tensorflow":
            import tensorflow as tf

            return float(tf.config.experimental.get_memory_info("GPU:0")["peak"]) / MB
        import torch

        return torch.cuda.max_memory_allocated() / MB


class _EpochTimer:
    """A Keras callback (built lazily, Keras is imported late) timing each epoch."""

    @staticmethod
    def create(keras: Any) -> Any:
        class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__()
                self.seconds: list[float] = []

            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self._t0 = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                self.seconds.append(time.perf_counter() - self._t0)

        return EpochTimer()


def _load(keras: Any, args: argparse.Namespace, name: str) -> Any:
    """A fresh copy of model ``name``: the prepared ``.keras`` file, or built and seeded."""
    if args.prepared:
        path = Path(args.prepared) / name / "model.keras"
        return keras.saving.load_model(path, compile=False)
    import keras_ref

    keras.utils.set_random_seed(args.seed)
    return keras_ref.build_model(name)


def _max_abs_diff(
    keras: Any, args: argparse.Namespace, name: str, predict: Any
) -> dict[str, float]:
    """``{"max_abs_diff": ...}`` of ``predict`` on the prepared inputs, or nothing unprepared."""
    if not args.prepared:
        return {}
    import numpy as np

    io = np.load(Path(args.prepared) / name / "io.npz")
    got = keras.ops.convert_to_numpy(predict(io["inputs"]))  # a torch tensor on that backend
    return {"max_abs_diff": float(np.abs(got - io["expected"]).max())}


def _measure(
    keras: Any,
    dev: _Device,
    args: argparse.Namespace,
    mode: str,
    task: str,
    batch_size: int,
    framework: str,
    name: str,
) -> dict[str, Any]:
    import numpy as np

    from keras_ref import recipe

    images = round_up(args.images, batch_size)
    warm = min(args.warmup_steps * batch_size, images)
    rng = np.random.default_rng(args.seed)
    x = rng.random((images, *IMAGE_SHAPE_NHWC), dtype=np.float32)
    labels = rng.integers(0, NUM_CLASSES, images)
    model = _load(keras, args, name)
    jit_compile: bool | str = True if mode == "xla" else "auto"
    steps_per_execution = STEPS_PER_EXECUTION if mode == "multistep" else 1
    extra: dict[str, Any] = {}
    if task == "train":
        y = recipe.targets(name, labels)
        recipe.compile_model(
            model, name, jit_compile=jit_compile, steps_per_execution=steps_per_execution
        )
    else:
        model.compile(jit_compile=jit_compile, steps_per_execution=steps_per_execution)

    rss_before = rss_mb()
    first_and_warm = []
    for _ in range(2):  # the first call traces/compiles; the second is a plain warm-up
        t0 = time.perf_counter()
        if task == "train":
            model.fit(x[:warm], y[:warm], batch_size=batch_size, epochs=1, verbose=0)
        else:
            model.predict(x[:warm], batch_size=batch_size, verbose=0)
        first_and_warm.append(time.perf_counter() - t0)
    dev.reset_peak()  # the peak over the timed repeats
    if task == "train":
        timer = _EpochTimer.create(keras)
        model.fit(x, y, batch_size=batch_size, epochs=args.repeats, verbose=0, callbacks=[timer])
        seconds = list(timer.seconds)
    else:
        seconds = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.predict(x, batch_size=batch_size, verbose=0)
            seconds.append(time.perf_counter() - t0)
        extra = _max_abs_diff(
            keras, args, name, lambda a: model.predict(a, batch_size=batch_size, verbose=0)
        )
    return record(
        framework=framework,
        mode=mode,
        model=name,
        task=task,
        batch_size=batch_size,
        device=dev.type,
        seconds=seconds,
        images_per_repeat=images,
        peak_memory_mb=dev.peak_mb(),
        memory_kind=dev.memory_kind,
        baseline_memory_mb=round(rss_before, 1),
        compile_s=round(first_and_warm[0], 3),
        warmup_s=round(first_and_warm[1], 3),
        device_name=dev.name(),
        settings={
            "jit_compile": jit_compile,
            "steps_per_execution": steps_per_execution,
            "keras_backend": args.backend,
            "dtype": "float32",
        }
        | (
            {"optimizer": f"keras.optimizers.Adam({recipe.LEARNING_RATE})"}
            if task == "train"
            else {}
        ),
        **extra,
    )


def _measure_latency(
    keras: Any, dev: _Device, args: argparse.Namespace, how: str, framework: str, name: str
) -> dict[str, Any]:
    """Batch-1 latency of ``predict_on_batch`` or ``model(x)`` (``how``), compile's defaults."""
    import numpy as np

    model = _load(keras, args, name)
    model.compile()  # jit_compile="auto": what predict_on_batch runs by default
    one = np.random.default_rng(args.seed).random((1, *IMAGE_SHAPE_NHWC), dtype=np.float32)
    if how == "predict_on_batch":
        call = model.predict_on_batch
    else:

        def call(a: Any) -> Any:
            return model(a, training=False)

    t0 = time.perf_counter()
    call(one)  # traces the predict function (or builds the eager call)
    t1 = time.perf_counter()
    call(one)
    calls = latency_calls(time.perf_counter() - t1, args.latency_calls)
    rss_before = rss_mb()
    dev.reset_peak()
    seconds = [median_call_s(lambda: call(one), calls) for _ in range(args.repeats)]
    return record(
        framework=framework,
        mode=how,
        model=name,
        task="latency",
        batch_size=1,
        device=dev.type,
        seconds=seconds,
        images_per_repeat=1,
        peak_memory_mb=dev.peak_mb(),
        memory_kind=dev.memory_kind,
        baseline_memory_mb=round(rss_before, 1),
        compile_s=round(t1 - t0, 3),
        device_name=dev.name(),
        calls_per_repeat=calls,
        settings={
            "call": how,
            "jit_compile": "auto",
            "keras_backend": args.backend,
            "dtype": "float32",
        },
        **_max_abs_diff(keras, args, name, call),
    )


def _set_threads(backend: str, threads: int | None) -> dict[str, int]:
    """Set (and report) the thread pools before the framework starts its runtime."""
    if backend == "tensorflow":
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        return {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads()
            or os.cpu_count()
            or 0,
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()
            or os.cpu_count()
            or 0,
        }
    import torch

    if threads:
        torch.set_num_threads(threads)
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


def _versions(backend: str, keras: Any) -> dict[str, str]:
    import numpy as np

    out = {"python": platform.python_version(), "numpy": np.__version__, "keras": keras.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    else:
        import torch

        out["torch"] = torch.__version__
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure every (mode, task, batch size) asked for; returns ``{"records", "notes"}``."""
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    framework = next(f for f, b in KERAS_BACKENDS.items() if b == args.backend)
    threads = _set_threads(args.backend, args.threads)
    import keras

    if keras.backend.backend() != args.backend:
        raise RuntimeError(f"Keras runs on {keras.backend.backend()!r}; expected {args.backend!r}")
    dev = _Device(args.backend)
    if dev.type != args.device:
        note = f"{framework}: asked for {args.device}, but Keras would run on {dev.type}; skipped"
        return {"records": [], "notes": [note]}
    versions = _versions(args.backend, keras)
    records = []
    plan: list[tuple[str, str, str, int]] = []  # (model, mode, task, batch size)
    for mode in args.modes:
        plan.append((args.model, mode, "infer", args.large_batch))
        plan += [(args.model, mode, "train", b) for b in dict.fromkeys(args.train_batches)]
    if args.latency and "default" in args.modes:
        plan += [(args.model, how, "latency", 1) for how in KERAS_LATENCY_CALLS]
    for name in args.converted:
        plan += [(name, "default", "infer", args.large_batch)]
        if args.latency:
            plan += [(name, "predict_on_batch", "latency", 1)]
    for name, mode, task, batch_size in plan:
        print(f"  {framework} {name} {mode} {task} batch {batch_size}", file=sys.stderr, flush=True)
        if task == "latency":
            rec = _measure_latency(keras, dev, args, mode, framework, name)
        else:
            rec = _measure(keras, dev, args, mode, task, batch_size, framework, name)
        rec["threads"] = threads
        rec["versions"] = versions
        records.append(rec)
    return {"records": records, "notes": []}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.keras_side", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--backend", choices=sorted(KERAS_MODES), required=True)
    p.add_argument("--model", default="model_cifar10")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--modes", type=lambda s: s.split(","), help="default: all for the backend")
    p.add_argument(
        "--train-batches",
        type=lambda s: [int(b) for b in s.split(",")],
        required=True,
        help="comma-separated training batch sizes",
    )
    p.add_argument("--large-batch", type=int, help="inference batch (default: per device)")
    p.add_argument("--images", type=int, help="images per repeat (default: per device)")
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS)
    p.add_argument("--threads", type=int, help="intra-op (and TF inter-op) threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help=f"a few steps per path ({QUICK})")
    p.add_argument("--prepared", help="benchmarks.prepare's directory (default: seeded models)")
    p.add_argument(
        "--converted",
        type=lambda s: [m for m in s.split(",") if m],
        default=[],
        help="comma-separated prepared models timed for inference and latency",
    )
    p.add_argument(
        "--latency-calls", type=int, default=0, help="calls per latency repeat (0: auto)"
    )
    p.add_argument(
        "--latency",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch-1 latency rows (default: on)",
    )
    p.add_argument("--out", required=True, help="JSON file to write")
    args = p.parse_args(argv)
    args.modes = args.modes or list(KERAS_MODES[args.backend])
    unknown = set(args.modes) - set(KERAS_MODES[args.backend])
    if unknown:
        p.error(f"modes {sorted(unknown)} unknown for {args.backend}: {KERAS_MODES[args.backend]}")
    # As the torch side's --quick: repeats and warm-up always, sizes only where not given.
    quick = QUICK if args.quick else {}
    args.large_batch = args.large_batch or quick.get("large_batch") or LARGE_BATCH[args.device]
    args.images = args.images or quick.get("images") or IMAGES_PER_REPEAT[args.device]
    args.repeats = quick.get("repeats", args.repeats)
    args.warmup_steps = quick.get("warmup_steps", args.warmup_steps)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    atomic_write_json(args.out, run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
