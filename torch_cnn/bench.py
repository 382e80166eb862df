"""``torch-cnn bench``: torch_cnn against Keras, side by side, in one run, on the same shapes.

For one model and one device it measures, on random images of shape ``(N, 3, 32, 32)``
(Keras: ``(N, 32, 32, 3)``) resident on the device:

- **training throughput**: images/s over full optimizer steps (forward, loss, backward,
  update), at batch 32 (the seeds' recipe) and at a large batch;
- **inference throughput**: images/s of the model's forward pass at the large batch, every
  output copied into one result tensor (what Keras's ``predict`` returns);
- **peak memory**: the process's peak RSS during the timed repeats on the CPU (Linux
  ``VmHWM``, reset after the warm-up; see ``bench_keras.PeakRSS``), the allocator's
  ``max_memory_allocated`` on CUDA;

for each of:

- ``torch_cnn`` / ``parity``: ``torch_cnn.train.fit`` with its defaults (float32, NCHW,
  Keras's Adam at lr 1e-3, eager), and ``model(x)`` under ``torch.inference_mode``;
- ``torch_cnn`` / ``fast``: the options that make it fastest while accuracy holds
  (``fast_settings``: channels_last, bf16 autocast where the hardware computes in bf16,
  fused Adam, ``torch.compile`` for inference, a whole-step CUDA graph on a GPU), trained
  at the recipe's batch on the CPU and the large batch on CUDA (``RunConfig.settings``),
  the learning rate scaled by the square root of batch / 32;
- ``keras_tensorflow`` / ``default``, ``xla`` and ``multistep``: Keras 3 on TensorFlow, ``fit``
  and ``predict`` with compile's defaults, with XLA, and with ``steps_per_execution``
  (``torch_cnn/bench_keras.py``, run in a process of its own);
- ``keras_torch`` / ``default``: Keras 3 on its torch backend, in a process of its own.

Each measurement runs ``warmup_steps`` batches twice first: the first call (tracing,
``torch.compile``, CUDA-graph capture, XLA compilation, lazy initialisation) is reported as
``compile_s``, the second as ``warmup_s``; neither counts. Then ``repeats`` passes over
``images`` images (rounded up to whole batches) are timed one by one (the GPU synchronised
at the end of each) and reported as median, min and max images/s. Every framework uses the
same number of intra-op threads (``--threads``, default: torch's default, one per core).

Training with ``fit`` includes what ``fit`` does every epoch and every step: a fresh
permutation, gathering each batch from the resident data, and its running loss and accuracy
(Keras's ``fit`` tracks both too). FLOP/s are derived from ``forward_flops`` (convolutions
and dense layers, 2 FLOPs per multiply-add; training counted as 3× the forward pass) and set
against an estimate of the hardware's peak (``cpu_peak``).

``--accuracy`` also trains the model for 10 epochs on CIFAR-10 in parity and in fast mode,
over several seeds, and reports both test accuracies: fast mode must not buy its speed with
accuracy. ``--profile`` appends the top operators of a few training steps in each mode.

>>> forward_flops(seeded_model("model_cifar10", 0))
10407936
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn import data
from torch_cnn._io import atomic_write
from torch_cnn.bench_keras import (
    KERAS_BACKENDS,
    KERAS_MODES,
    RECORD_KEYS,
    PeakRSS,
    record,
    round_up,
    rss_mb,
)
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.optim import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KERAS_ADAM_EPSILON,
    KERAS_ADAM_LEARNING_RATE,
    KerasAdam,
)
from torch_cnn.registry import list_models
from torch_cnn.train import KERAS_FIT_BATCH_SIZE, evaluate, fit, seeded_model

FRAMEWORKS = ("torch_cnn", *KERAS_BACKENDS)
MODES = ("parity", "fast")
DEVICES = ("cpu", "cuda")
# The large batch for training and inference, per device type. On CUDA it divides CIFAR-10's
# 50,000 training images, so a repeat is exactly one epoch.
LARGE_BATCH = {"cpu": 256, "cuda": 500}
# Images per timed repeat: on CUDA one CIFAR-10 training epoch (the 50 ms target).
IMAGES_PER_REPEAT = {"cpu": 4096, "cuda": 50_000}
# Fast mode's training batch, the one its accuracy is checked at (see fast_settings).
FAST_RECIPE_BATCH = {"cpu": KERAS_FIT_BATCH_SIZE, "cuda": LARGE_BATCH["cuda"]}
CIFAR10_TRAIN_IMAGES = 50_000
REPEATS = 5
WARMUP_STEPS = 5
ACCURACY_EPOCHS = 10
ACCURACY_SEEDS = (0, 1, 2)
ACCURACY_TOLERANCE_POINTS = 2.0  # fast mode may lose at most this much test accuracy
OPTIMIZERS = ("keras_adam", "adam_fused", "adam_foreach")
# A --quick run: seconds, not minutes (for the smoke test, not for numbers).
QUICK = {"images": 128, "repeats": 2, "warmup_steps": 1, "large_batch": 64}
_MB = 1 << 20


# ---------------------------------------------------------------------------------------------
# What each torch_cnn mode runs


@dataclass(frozen=True)
class Settings:
    """How torch_cnn trains and predicts in one benchmark mode.

    ``batch_size`` is the mode's large batch. With ``scale_lr`` the learning rate is Keras's
    1e-3 scaled by ``sqrt(batch / 32)`` (the square-root rule for Adam); batch 32 keeps 1e-3.
    ``compile_mode`` is passed to ``torch.compile`` (None: its default). ``cuda_graphs``
    captures the whole training step (gather, forward, loss, backward, fused Adam) in one
    CUDA graph; it needs a capturable optimizer (``adam_fused`` or ``adam_foreach``).
    """

    mode: str
    batch_size: int
    optimizer: str = "keras_adam"
    scale_lr: bool = False
    channels_last: bool = False
    bf16: bool = False
    compile_train: bool = False
    compile_infer: bool = False
    compile_mode: str | None = None
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; received mode={self.mode!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}; received {self.optimizer!r}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive; received {self.batch_size}")
        if self.cuda_graphs and self.optimizer == "keras_adam":
            raise ValueError(
                "cuda_graphs needs a capturable optimizer (adam_fused or adam_foreach); "
                "received optimizer='keras_adam', which computes its step size on the CPU"
            )

    def lr(self, batch_size: int) -> float:
        """The learning rate at ``batch_size``.

        >>> Settings("fast", 128, scale_lr=True).lr(128)
        0.002
        """
        if not self.scale_lr:
            return KERAS_ADAM_LEARNING_RATE
        return KERAS_ADAM_LEARNING_RATE * math.sqrt(batch_size / KERAS_FIT_BATCH_SIZE)

    @property
    def tf32(self) -> bool:
        """Whether CUDA may use TF32 for float32 convolutions and matmuls: never in parity mode."""
        return self.mode == "fast"

    def describe(self, task: str, batch_size: int) -> dict[str, Any]:
        """The settings a record of ``task`` at ``batch_size`` ran with."""
        out: dict[str, Any] = {
            "dtype": "float32",
            "tf32_on_cuda": self.tf32,
            "autocast": "bfloat16" if self.bf16 else None,
            "memory_format": "channels_last" if self.channels_last else "contiguous",
            "data": "device-resident",
        }
        if task == "train":
            out |= {
                "optimizer": self.optimizer,
                "lr": self.lr(batch_size),
                "compile": self.compile_train,
                "cuda_graphs": self.cuda_graphs,
            }
        else:
            out["compile"] = self.compile_infer
        if out["compile"]:
            out["compile_mode"] = self.compile_mode or "default"
        return out


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (without it bf16 autocast is slower).

    CUDA: ``torch.cuda.is_bf16_supported()``. CPU: the ``avx512_bf16`` or ``amx_bf16``
    flag in ``/proc/cpuinfo`` (oneDNN emulates bf16 on other CPUs).
    """
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    flags = cpu_info()["flags"]
    return "avx512_bf16" in flags or "amx_bf16" in flags


def parity_settings(device: torch.device, batch_size: int | None = None) -> Settings:
    """``fit``'s defaults: float32, NCHW, Keras's Adam at 1e-3, eager."""
    return Settings("parity", batch_size or LARGE_BATCH[device.type])


def fast_settings(
    device: torch.device, batch_size: int | None = None, **overrides: Any
) -> Settings:
    """The fastest settings found for ``device`` that keep the accuracy (README, Speed).

    - CPU: channels_last with bf16 autocast (when the CPU has bf16 instructions), fused
      ``torch.optim.Adam``, ``torch.compile`` for inference only (it made training slower
      on a 2-core CPU), at the recipe's batch (32): batch 256 with the learning rate
      scaled by √8 was 1.05–1.4× faster per image on 2 cores and 4.3 points less accurate
      after 10 epochs on the 5,085-image sample (8× fewer steps).
    - CUDA: the same, plus a whole-step CUDA graph for training and
      ``torch.compile(mode="reduce-overhead")`` (which uses CUDA graphs) for inference, at
      the large batch (500), where a GPU's throughput is.
    """
    cuda = device.type == "cuda"
    settings = Settings(
        "fast",
        batch_size or FAST_RECIPE_BATCH[device.type],
        optimizer="adam_fused",
        scale_lr=True,
        channels_last=True,
        bf16=bf16_supported(device),
        compile_train=False,
        compile_infer=True,
        compile_mode="reduce-overhead" if cuda else None,
        cuda_graphs=cuda,
    )
    return dataclasses.replace(settings, **overrides)


def parse_overrides(text: str) -> dict[str, Any]:
    """``"bf16=false,batch_size=512"`` → ``{"bf16": False, "batch_size": 512}`` (``Settings`` fields).

    >>> parse_overrides("bf16=false,batch_size=512,compile_mode=none")
    {'bf16': False, 'batch_size': 512, 'compile_mode': None}
    """
    types = {f.name: f.type for f in dataclasses.fields(Settings) if f.name != "mode"}
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            raise ValueError(
                f"expected KEY=VALUE with KEY one of {', '.join(types)}; received {item!r}"
            )
        kind = str(types[key])
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"{key} takes true or false; received {value!r}")
            out[key] = value.lower() in ("true", "1")
        elif kind == "int":
            out[key] = int(value)
        elif value.lower() == "none":
            out[key] = None
        else:
            out[key] = value
    return out


def make_optimizer(
    name: str, params: Any, lr: float, *, capturable: bool = False
) -> torch.optim.Optimizer:
    """``keras_adam``: ``KerasAdam`` (``fit``'s default); ``adam_fused``/``adam_foreach``:
    ``torch.optim.Adam`` with Keras's betas and epsilon (epsilon after the bias correction,
    see ``torch_cnn.optim``), one fused kernel or a few multi-tensor kernels per step."""
    if name == "keras_adam":
        return KerasAdam(params, lr=lr)
    kwargs: dict[str, Any] = {
        "lr": lr,
        "betas": (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
        "eps": KERAS_ADAM_EPSILON,
        "capturable": capturable,
    }
    if name == "adam_fused":
        return torch.optim.Adam(params, fused=True, **kwargs)
    if name == "adam_foreach":
        return torch.optim.Adam(params, foreach=True, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")


# ---------------------------------------------------------------------------------------------
# FLOPs and the hardware's peak


def forward_flops(model: KerasStyleNet) -> int:
    """FLOPs of one image's forward pass: 2 per multiply-add of every conv and dense layer.

    Worked out from each layer's weight and output shape (``model.output_shapes()``);
    biases, activations, pooling and the loss are left out (they are not multiply-adds).

    >>> forward_flops(seeded_model("model_cnn", 0))
    501760
    """
    shapes = model.output_shapes()
    total = 0
    for info, module in model.keras_layers():
        if isinstance(module, nn.Conv2d):
            c_out, h, w = shapes[info.module]
            kh, kw = module.kernel_size
            total += 2 * (module.in_channels // module.groups) * kh * kw * c_out * h * w
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features
    return total


def cpu_info() -> dict[str, Any]:
    """Model name, flags, logical CPUs and clock (MHz) from ``/proc/cpuinfo`` (Linux)."""
    info: dict[str, Any] = {
        "model": platform.processor() or platform.machine(),
        "flags": set(),
        "logical_cpus": os.cpu_count() or 1,
        "mhz": None,
        "vendor": None,
        "family": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "model name":
            info["model"] = value
        elif key == "flags":
            info["flags"] = set(value.split())
        elif key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family" and value.isdigit():
            info["family"] = int(value)
        elif key == "cpu MHz" and info["mhz"] is None:
            info["mhz"] = float(value)
    try:  # the rated maximum, where the kernel exposes it (not inside most VMs)
        khz = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text()
        info["mhz"] = int(khz) / 1000
    except (OSError, ValueError):
        pass
    return info


def cpu_peak(cores: int, info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An estimate of the CPU's peak FLOP/s: cores × clock × FLOP per cycle per core.

    FLOP per cycle assumes two FMA units per core (Xeon Scalable): AVX-512 fp32
    2 × 16 lanes × 2 = 64, AVX2 32; bf16 with AMX 1,024 (one 16×32×16 tile multiply-add
    per 16 cycles), with AVX512_BF16 2 × 32 products × 2 = 128. AMD Zen 4 (family 25 with
    AVX-512) runs AVX-512 on 256-bit datapaths: half those rates. Logical CPUs count as
    cores (a VM does not say which are SMT siblings). The clock is the one
    ``/proc/cpuinfo`` reports (in a VM often the nominal TSC rate): an estimate, not a
    measurement.

    >>> p = cpu_peak(2, {"flags": {"avx512f", "amx_bf16"}, "mhz": 2000.0})
    >>> p["fp32_gflops"], p["bf16_gflops"]
    (256.0, 4096.0)
    >>> zen4 = {"flags": {"avx512f", "avx512_bf16"}, "mhz": 2000.0, "vendor": "AuthenticAMD", "family": 25}
    >>> cpu_peak(2, zen4)["fp32_gflops"], cpu_peak(2, zen4)["bf16_gflops"]
    (128.0, 256.0)
    """
    info = info if info is not None else cpu_info()
    flags, mhz = info["flags"], info["mhz"]
    zen4 = info.get("vendor") == "AuthenticAMD" and info.get("family") == 25
    if "avx512f" in flags and zen4:
        fp32, fp32_basis = 32, "Zen 4 AVX-512 on 256-bit datapaths: 2 FMA units × 8 fp32 lanes × 2"
    elif "avx512f" in flags:
        fp32, fp32_basis = 64, "AVX-512: 2 FMA units × 16 fp32 lanes × 2"
    elif "avx2" in flags and "fma" in flags:
        fp32, fp32_basis = 32, "AVX2: 2 FMA units × 8 fp32 lanes × 2"
    else:
        fp32, fp32_basis = 8, "SSE: 4 lanes × 2"
    if "amx_bf16" in flags:
        bf16, bf16_basis = 1024, "AMX-BF16: 1,024 bf16 FLOP/cycle"
    elif "avx512_bf16" in flags and zen4:
        bf16, bf16_basis = 64, "Zen 4 AVX512_BF16 on 256-bit datapaths: 2 × 16 bf16 products × 2"
    elif "avx512_bf16" in flags:
        bf16, bf16_basis = 128, "AVX512_BF16: 2 FMA units × 32 bf16 products × 2"
    else:
        bf16, bf16_basis = fp32, "no bf16 instructions: fp32 rate"
    if not mhz:
        return {"fp32_gflops": None, "bf16_gflops": None, "basis": "clock unknown"}
    ghz = mhz / 1000
    return {
        "fp32_gflops": cores * ghz * fp32,
        "bf16_gflops": cores * ghz * bf16,
        "basis": (
            f"{cores} cores × {ghz:.2f} GHz × {fp32} FLOP/cycle fp32 ({fp32_basis}); "
            f"× {bf16} FLOP/cycle bf16 ({bf16_basis})"
        ),
    }


# ---------------------------------------------------------------------------------------------
# Timing torch_cnn


@contextlib.contextmanager
def tf32_allowed(allowed: bool) -> Iterator[None]:
    """Allow or forbid TF32 on CUDA (cuDNN allows it by default) inside the block, then restore."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Memory:
    """Peak memory over the timed repeats: process RSS on the CPU, allocator peak on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rss = PeakRSS()

    @property
    def kind(self) -> str:
        return "cuda_max_allocated" if self.device.type == "cuda" else self.rss.kind

    def current_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / _MB
        return rss_mb()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.rss.reset()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / _MB
        return self.rss.peak_mb()


@dataclass
class Timing:
    """What ``time_calls`` measured (seconds; memory in MiB)."""

    compile_s: float
    warmup_s: float
    seconds: list[float]
    peak_memory_mb: float
    baseline_memory_mb: float
    memory_kind: str


def time_calls(
    call: Callable[[int], object],
    *,
    warm_images: int,
    images: int,
    repeats: int,
    device: torch.device,
) -> Timing:
    """Time ``call(images)`` ``repeats`` times, after two untimed ``call(warm_images)``.

    The first call's time is ``compile_s``, the second's ``warmup_s``; the device is
    synchronised after every call, and the memory peak is reset after the warm-up.
    """
    memory = _Memory(device)
    baseline = memory.current_mb()
    first_two = []
    for _ in range(2):
        t0 = time.perf_counter()
        call(warm_images)
        _sync(device)
        first_two.append(time.perf_counter() - t0)
    memory.reset()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call(images)
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    return Timing(first_two[0], first_two[1], seconds, memory.peak_mb(), baseline, memory.kind)


class CudaGraphTrainer:
    """Training steps replayed from one CUDA graph: gather, forward, loss, backward, Adam.

    The whole dataset stays on the GPU; a step copies the batch's indices into a static
    buffer and replays the graph, which gathers the batch itself. The last partial batch of
    an epoch is dropped (as in airbench), so every step has the captured shape. Capture
    follows PyTorch's whole-network recipe: three warm-up steps on a side stream, then
    ``torch.cuda.graph``; the weights and optimizer state are then put back in place to
    what they were before the warm-up, so the graph trains from the model as given.
    """

    def __init__(
        self,
        model: KerasStyleNet,
        x: torch.Tensor,
        y: torch.Tensor,
        settings: Settings,
        batch_size: int,
    ) -> None:
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.device = x.device
        self.bf16 = settings.bf16
        self.fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.optimizer = make_optimizer(
            settings.optimizer, model.parameters(), settings.lr(batch_size), capturable=True
        )
        self.logits: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model.logits, mode="max-autotune-no-cudagraphs")
            if settings.compile_train
            else model.logits
        )
        self.idx = torch.zeros(batch_size, dtype=torch.int64, device=self.device)
        self.graph = torch.cuda.CUDAGraph()
        self._capture()

    def _step(self) -> None:
        xb = self.x[self.idx].contiguous(memory_format=self.fmt)
        yb = self.y[self.idx]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16, cache_enabled=False):
            logits = self.logits(xb)
        loss = F.cross_entropy(logits.float(), yb)
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()

    def _capture(self) -> None:
        initial = [p.detach().clone() for p in self.model.parameters()]
        self.model.train()
        side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.optimizer.zero_grad(set_to_none=True)
                self._step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self._step()
        with torch.no_grad():  # in place: the graph holds these very tensors
            for p, p0 in zip(self.model.parameters(), initial, strict=True):
                p.copy_(p0)
            for state in self.optimizer.state.values():
                for value in state.values():
                    if isinstance(value, torch.Tensor):
                        value.zero_()

    def epoch(self, images: int, generator: torch.Generator) -> None:
        """One epoch over the first ``images`` images in a fresh order (no sync at the end)."""
        order = torch.randperm(images, generator=generator, device=self.device)
        for i in range(images // self.batch_size):
            self.idx.copy_(order[i * self.batch_size : (i + 1) * self.batch_size])
            self.graph.replay()


def _train_call(
    model: KerasStyleNet,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Settings,
    batch_size: int,
    seed: int,
) -> Callable[[int], object]:
    """``call(n)``: one epoch over the first ``n`` images, as ``settings`` trains."""
    device = x.device
    if settings.cuda_graphs and device.type == "cuda":
        generator = torch.Generator(device=device).manual_seed(seed)
        trainers: list[CudaGraphTrainer] = []

        def replay(n: int) -> object:
            if not trainers:  # capture on the first call, so that compile_s includes it
                trainers.append(CudaGraphTrainer(model, x, y, settings, batch_size))
            trainers[0].epoch(n, generator)
            return None

        return replay
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr(batch_size))

    def call(n: int) -> object:
        return fit(
            model,
            (x[:n], y[:n]),
            epochs=1,
            batch_size=batch_size,
            optimizer=optimizer,
            seed=seed,
            device=device,
            channels_last=settings.channels_last,
            bf16=settings.bf16,
            compile=settings.compile_train,
            progress=False,
        )

    return call


def _infer_call(
    model: KerasStyleNet, x: torch.Tensor, settings: Settings, batch_size: int
) -> Callable[[int], object]:
    """``call(n)``: ``model(x)`` over the first ``n`` images, every output kept (as ``predict``)."""
    device = x.device
    model.eval()
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    if settings.channels_last:
        model.to(memory_format=fmt)  # type: ignore[call-overload]  # untyped in torch's stubs
    forward: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(model, mode=settings.compile_mode) if settings.compile_infer else model
    )
    graphs = (
        settings.compile_infer
        and device.type == "cuda"
        and "reduce-overhead" in str(settings.compile_mode)
    )
    out = torch.empty(len(x), data.NUM_CLASSES, device=device)

    def call(n: int) -> object:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16),
        ):
            for i in range(0, n, batch_size):
                if graphs:  # the graph's output buffer is reused by the next replay
                    torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
                out[i : i + batch_size] = forward(
                    x[i : i + batch_size].contiguous(memory_format=fmt)
                )
        return out

    return call


@dataclass(frozen=True)
class RunConfig:
    """One benchmark run: what to measure, how long, with how many threads."""

    model: str = "model_cifar10"
    device: str = "cpu"
    frameworks: tuple[str, ...] = FRAMEWORKS
    small_batch: int = KERAS_FIT_BATCH_SIZE
    large_batch: int | None = None
    images: int | None = None
    repeats: int = REPEATS
    warmup_steps: int = WARMUP_STEPS
    threads: int | None = None
    seed: int = 0
    fast_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def large(self) -> int:
        return self.large_batch or LARGE_BATCH[self.torch_device.type]

    @property
    def images_per_repeat(self) -> int:
        return self.images or IMAGES_PER_REPEAT[self.torch_device.type]

    def settings(self, mode: str) -> Settings:
        if mode == "parity":
            return parity_settings(self.torch_device, self.large)
        # Fast mode's recipe batch (what --accuracy trains): the seeds' on the CPU, the large
        # one on CUDA; --fast batch_size=N overrides it.
        recipe = self.small_batch if self.torch_device.type == "cpu" else self.large
        overrides = {"batch_size": recipe, **self.fast_overrides}
        return fast_settings(self.torch_device, **overrides)


def measure_torch(
    config: RunConfig, settings: Settings, task: str, batch_size: int
) -> dict[str, Any]:
    """One torch_cnn record: ``task`` ('train' or 'infer') at ``batch_size`` with ``settings``."""
    device = config.torch_device
    images = round_up(config.images_per_repeat, batch_size)
    g = torch.Generator().manual_seed(config.seed)  # built on the CPU, then moved
    x = torch.rand(images, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, data.NUM_CLASSES, (images,), generator=g).to(device)
    model = seeded_model(config.model, config.seed, device=device)
    call = (
        _train_call(model, x, y, settings, batch_size, config.seed)
        if task == "train"
        else _infer_call(model, x, settings, batch_size)
    )
    with tf32_allowed(settings.tf32):
        timing = time_calls(
            call,
            warm_images=min(config.warmup_steps * batch_size, images),
            images=images,
            repeats=config.repeats,
            device=device,
        )
    return record(
        framework="torch_cnn",
        mode=settings.mode,
        model=config.model,
        task=task,
        batch_size=batch_size,
        device=device.type,
        seconds=timing.seconds,
        images_per_repeat=images,
        peak_memory_mb=timing.peak_memory_mb,
        memory_kind=timing.memory_kind,
        baseline_memory_mb=round(timing.baseline_memory_mb, 1),
        compile_s=round(timing.compile_s, 3),
        warmup_s=round(timing.warmup_s, 3),
        device_name=describe_device(device),
        settings=settings.describe(task, batch_size),
        threads={"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()},
        versions=torch_versions(),
    )


def describe_device(device: torch.device) -> str:
    """``'cuda: NVIDIA H100 80GB HBM3'`` or ``'cpu: Intel(R) Xeon(R) …'``."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_info()['model']}"


def torch_versions() -> dict[str, str]:
    """Python, torch, NumPy and torch_cnn versions (and CUDA's, when torch was built with it)."""
    from torch_cnn.env import versions

    out = versions()
    if torch.version.cuda:
        out["cuda"] = torch.version.cuda
    return out


# ---------------------------------------------------------------------------------------------
# Keras, in subprocesses


def keras_available(framework: str) -> str | None:
    """None if ``framework``'s Keras can be imported, else why not (without importing it)."""
    import importlib.util

    needed = ["keras", "tensorflow"] if framework == "keras_tensorflow" else ["keras"]
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def measure_keras(config: RunConfig, framework: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Run ``bench_keras.py`` for ``framework`` in its own process; returns (records, notes)."""
    if reason := keras_available(framework):
        return [], [f"{framework}: skipped ({reason})"]
    backend = KERAS_BACKENDS[framework]
    script = Path(__file__).with_name("bench_keras.py")
    root = str(script.parent.parent)  # where keras_ref lives beside torch_cnn
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    env["KERAS_BACKEND"] = backend
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if config.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # Keras would take a GPU whenever it sees one
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        cmd = [
            sys.executable,
            str(script),
            f"--backend={backend}",
            f"--model={config.model}",
            f"--device={torch.device(config.device).type}",
            f"--modes={','.join(KERAS_MODES[backend])}",
            f"--train-batches={config.small_batch},{config.large}",
            f"--large-batch={config.large}",
            f"--images={config.images_per_repeat}",
            f"--repeats={config.repeats}",
            f"--warmup-steps={config.warmup_steps}",
            f"--threads={config.threads or torch.get_num_threads()}",
            f"--seed={config.seed}",
            f"--out={out}",
        ]
        tail: collections.deque[str] = collections.deque(maxlen=20)
        with subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True) as proc:
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


# ---------------------------------------------------------------------------------------------
# The run


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
    add_flops(records, config, gemm)
    return records, notes


def add_flops(
    records: list[dict[str, Any]], config: RunConfig, gemm: Mapping[str, float] | None = None
) -> None:
    """Add ``gflop_per_s`` and ``peak_gflop_per_s`` (with ``peak_basis``) to each record.

    The peak is the measured matmul rate (``gemm``, per dtype) where given; else, on the
    CPU, the estimate of ``cpu_peak``.
    """
    flops = forward_flops(seeded_model(config.model, 0))
    estimate = cpu_peak(config.threads or torch.get_num_threads())
    for rec in records:
        per_image = flops * (3 if rec["task"] == "train" else 1)
        rec["gflop_per_s"] = rec["images_per_s"] * per_image / 1e9
        bf16 = rec.get("settings", {}).get("autocast") == "bfloat16"
        if gemm is not None:
            rec["peak_gflop_per_s"] = gemm["bf16" if bf16 else "fp32"]
            rec["peak_basis"] = f"measured {'bf16' if bf16 else 'fp32'} matmul"
        elif rec["device"] == "cpu" and estimate["fp32_gflops"]:
            rec["peak_gflop_per_s"] = estimate["bf16_gflops" if bf16 else "fp32_gflops"]
            rec["peak_basis"] = "estimate: " + estimate["basis"]


def measure_gemm(
    device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5
) -> float:
    """GFLOP/s of an (n × n) @ (n × n) matmul in ``dtype`` on ``device``, best of ``repeats``.

    What the hardware delivers to the best-tuned kernel torch has (oneDNN/MKL, cuBLAS): a
    practical ceiling for the convolutions and dense layers of a training step.
    """
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.rand(n, n, generator=g).to(device=device, dtype=dtype)
    times = []
    for _ in range(repeats + 1):  # the first call warms up
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times[1:]) / 1e9


def machine(config: RunConfig) -> dict[str, Any]:
    """Where and when the run happened: host, device, threads, load, peak estimate, date."""
    info = cpu_info()
    device = config.torch_device
    threads = config.threads or torch.get_num_threads()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": describe_device(device),
        "cpu": info["model"],
        "logical_cpus": info["logical_cpus"],
        "threads": threads,
        "bf16": bf16_supported(device),
        "cpu_peak": cpu_peak(threads, info),
        "gemm_gflops": {
            "fp32": measure_gemm(device, torch.float32),
            "bf16": measure_gemm(device, torch.bfloat16),
        },
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "versions": torch_versions(),
    }


# ---------------------------------------------------------------------------------------------
# Reporting


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _settings_text(rec: Mapping[str, Any]) -> str:
    s = rec.get("settings", {})
    if rec["framework"] != "torch_cnn":
        jit = s.get("jit_compile")
        text = (
            "XLA (jit_compile=True)" if jit is True else f"compile defaults (jit_compile={jit!r})"
        )
        if s.get("steps_per_execution", 1) > 1:
            text += f", steps_per_execution={s['steps_per_execution']}"
        return text
    parts = ["bf16 autocast" if s.get("autocast") else "fp32"]
    if s.get("memory_format") == "channels_last":
        parts.append("channels_last")
    if "optimizer" in s:
        parts.append(f"{s['optimizer']} lr {s['lr']:.2g}")
    if s.get("compile"):
        parts.append(f"compile ({s.get('compile_mode', 'default')})")
    if s.get("cuda_graphs"):
        parts.append("CUDA graph")
    return ", ".join(parts)


def _best(records: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r["images_per_s"]) if found else None


def format_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The markdown table of ``records``: one row each, ``× Keras TF`` against Keras on
    TensorFlow's best record for the same task and batch size."""
    head = (
        "| framework | mode | task | batch | images/s (median) | min – max | × Keras TF "
        "| GFLOP/s (% of matmul peak) | peak memory MiB | compile s | settings |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in records:
        ref = _best(
            records, framework="keras_tensorflow", task=r["task"], batch_size=r["batch_size"]
        )
        ratio = f"{r['images_per_s'] / ref['images_per_s']:.2f}×" if ref else "–"
        flops = _fmt(r["gflop_per_s"]) if "gflop_per_s" in r else "–"
        if r.get("peak_gflop_per_s"):
            flops += f" ({100 * r['gflop_per_s'] / r['peak_gflop_per_s']:.1f}%)"
        lines.append(
            f"| {r['framework']} | {r['mode']} | {r['task']} | {r['batch_size']} "
            f"| {_fmt(r['images_per_s'])} | {_fmt(r['images_per_s_min'])} – "
            f"{_fmt(r['images_per_s_max'])} | {ratio} | {flops} | {r['peak_memory_mb']:,.0f} "
            f"| {r.get('compile_s', 0):.2f} | {_settings_text(r)} |"
        )
    return "\n".join(lines)


def accuracy_holds(accuracy: Mapping[str, Any]) -> bool:
    """Fast mode's mean test accuracy is at most 2 points below parity mode's."""
    return bool(accuracy["difference_points"] >= -ACCURACY_TOLERANCE_POINTS)


def target_report(
    records: Sequence[Mapping[str, Any]],
    small_batch: int,
    accuracy: Mapping[str, Any] | None = None,
    gemm: Mapping[str, float] | None = None,
) -> list[str]:
    """Issue 6's targets, each as a line: the measured ratio, the target, met or not.

    Fast mode's targets hold only with its accuracy: without ``accuracy`` (``--accuracy``)
    they are reported as speed alone, and say that the accuracy was not checked. With
    ``gemm`` (GFLOP/s of the best matmul, per dtype) a missed target also says what
    arithmetic rate it needs against what the hardware does at best.
    """
    lines = []

    def bound(ours: Mapping[str, Any], ref: Mapping[str, Any], target: float) -> str:
        if gemm is None or "gflop_per_s" not in ref:
            return ""
        dtype = "bf16" if ours.get("settings", {}).get("autocast") == "bfloat16" else "fp32"
        needed = target * ref["gflop_per_s"]
        verdict = "more than" if needed > gemm[dtype] else "within"
        return (
            f"; it needs {_fmt(needed)} GFLOP/s, {verdict} the {_fmt(gemm[dtype])} GFLOP/s of "
            f"the best {dtype} matmul on this machine"
        )

    def ratio(
        name: str,
        ours: Mapping[str, Any] | None,
        ref: Mapping[str, Any] | None,
        target: float,
        *,
        needs_accuracy: bool = False,
    ) -> None:
        if ours is None or ref is None:
            lines.append(f"- {name}: not measured")
            return
        x = ours["images_per_s"] / ref["images_per_s"]
        met = x >= target
        verdict = "met" if met else "NOT met"
        if needs_accuracy:
            if accuracy is None:
                verdict += " for speed; accuracy not checked (run with --accuracy)"
            elif not accuracy_holds(accuracy):
                verdict = f"NOT met: accuracy {accuracy['difference_points']:+.2f} points"
            else:
                verdict += f", accuracy {accuracy['difference_points']:+.2f} points"
        lines.append(
            f"- {name}: {_fmt(ours['images_per_s'])} / {_fmt(ref['images_per_s'])} img/s = "
            f"**{x:.2f}×** (target ≥ {target:g}×): {verdict}"
            + (bound(ours, ref, target) if not met else "")
        )

    keras = "keras_tensorflow"
    ratio(
        f"parity train @{small_batch} vs Keras-TF fit @{small_batch} (its best mode)",
        _best(records, framework="torch_cnn", mode="parity", task="train", batch_size=small_batch),
        _best(records, framework=keras, task="train", batch_size=small_batch),
        2,
    )
    infer = _best(records, framework="torch_cnn", mode="parity", task="infer")
    ratio(
        "parity inference vs Keras-TF predict (same batch, its best mode)",
        infer,
        _best(records, framework=keras, task="infer", batch_size=infer["batch_size"])
        if infer
        else None,
        3,
    )
    # With the accuracy check, fast mode is the recipe it checked (its batch), not any row.
    batch = {"batch_size": accuracy["fast_settings"]["batch_size"]} if accuracy else {}
    fast = _best(records, framework="torch_cnn", mode="fast", task="train", **batch)
    ratio(
        f"fast train (batch {fast['batch_size'] if fast else '?'}) vs Keras-TF's best fit "
        "(any batch, any mode)",
        fast,
        _best(records, framework=keras, task="train"),
        3,
        needs_accuracy=True,
    )
    if fast is not None and fast["device"] == "cuda":
        epoch_ms = 1000 * CIFAR10_TRAIN_IMAGES / fast["images_per_s"]
        how = (
            "measured epochs of 50,000 images"
            if fast["images_per_repeat"] == CIFAR10_TRAIN_IMAGES
            else f"from repeats of {fast['images_per_repeat']:,} images"
        )
        verdict = "met" if epoch_ms <= 50 else "NOT met"
        if accuracy is not None and not accuracy_holds(accuracy):
            verdict = "NOT met (accuracy)"
        lines.append(
            f"- fast train, one 50,000-image epoch on the GPU: **{epoch_ms:.1f} ms** "
            f"({how}; target ≤ 50 ms): {verdict}"
        )
    return lines


def format_report(
    records: Sequence[Mapping[str, Any]],
    notes: Sequence[str],
    config: RunConfig,
    info: Mapping[str, Any],
    command: str,
    extra: Sequence[str] = (),
    accuracy: Mapping[str, Any] | None = None,
) -> str:
    """The markdown the benchmark prints: provenance, the table, the targets, notes."""
    v = dict(info["versions"])
    for rec in records:
        v.update(rec.get("versions", {}))
    peak = info["cpu_peak"]
    load = info["load_average"]
    lines = [
        f"### `{config.model}` on {info['device']}",
        "",
        f"- Date: {info['date']}; command: `{command}`",
        f"- Machine: {info['cpu']}, {info['logical_cpus']} logical CPUs, {info['threads']} "
        f"intra-op threads for every framework; bf16 compute: {'yes' if info['bf16'] else 'no'}"
        + (f"; 1-minute load average {load[0]:.2f} at the start" if load else "")
        + (f", {end[0]:.2f} at the end" if (end := info.get("load_average_end")) else ""),
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in sorted(v.items())),
        f"- Each row: median (min – max) over {config.repeats} repeats of "
        f"{config.images_per_repeat:,} random images (rounded up to whole batches); warm-up "
        f"({config.warmup_steps} batches, twice) and compilation excluded, compile s is the "
        "first call. Peak memory: process RSS peak on the CPU (framework runtime included), "
        "allocator peak on CUDA.",
    ]
    if gemm := info.get("gemm_gflops"):
        lines.append(
            f"- Best matmul measured here (2048² @ 2048², torch.mm): fp32 "
            f"{_fmt(gemm['fp32'])} GFLOP/s, bf16 {_fmt(gemm['bf16'])} GFLOP/s."
        )
    if peak.get("fp32_gflops"):
        lines.append(
            f"- Peak estimate from the CPU's flags and clock (for reference; the % column is "
            f"against the measured matmul): fp32 {peak['fp32_gflops']:,.0f} GFLOP/s, "
            f"bf16 {peak['bf16_gflops']:,.0f} GFLOP/s = {peak['basis']}. Training counts "
            f"3× the forward FLOPs ({forward_flops(seeded_model(config.model, 0)) / 1e6:.2f} "
            "MFLOP per image)."
        )
    lines += ["", format_table(records), "", "Targets (issue 6, defined for model_cifar10):"]
    lines += target_report(records, config.small_batch, accuracy, info.get("gemm_gflops"))
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    lines += extra
    return "\n".join(lines) + "\n"


def readme_key(config: RunConfig) -> str:
    """Which README block a run fills: ``model_cifar10 cpu``."""
    return f"{config.model} {config.torch_device.type}"


def write_readme_section(path: str | Path, key: str, report: str) -> None:
    r"""Put ``report`` between ``<!-- bench KEY start -->`` and ``<!-- bench KEY end -->``.

    Everything else in the file stays as it was; the file is replaced atomically. Without
    both markers (once each, in order) nothing is written and ``ValueError`` says what is
    missing.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = Path(d) / "README.md"
    ...     _ = p.write_text("a\n<!-- bench m cpu start -->\nold\n<!-- bench m cpu end -->\nb\n")
    ...     write_readme_section(p, "m cpu", "new\n")
    ...     p.read_text()
    'a\n<!-- bench m cpu start -->\nnew\n<!-- bench m cpu end -->\nb\n'
    """
    path = Path(path)
    text = path.read_text()
    start, end = f"<!-- bench {key} start -->", f"<!-- bench {key} end -->"
    i, j = text.find(start), text.find(end)
    if text.count(start) != 1 or text.count(end) != 1 or j < i:
        raise ValueError(
            f"{path} needs the lines {start!r} and {end!r}, once each and in that order, "
            f"around the block the benchmark writes; found {text.count(start)} and "
            f"{text.count(end)}"
        )
    body = report if report.endswith("\n") else report + "\n"
    new = text[: i + len(start)] + "\n" + body + text[j:]
    atomic_write(path, lambda tmp: Path(tmp).write_text(new))


# ---------------------------------------------------------------------------------------------
# Accuracy and profile


def train_fast(
    model: KerasStyleNet,
    train: data.Split,
    settings: Settings,
    *,
    epochs: int,
    seed: int,
    device: torch.device,
) -> None:
    """Train ``model`` in place as fast mode does: ``fit`` with its options, or CUDA graphs."""
    batch = settings.batch_size
    if settings.cuda_graphs and device.type == "cuda":
        x = data.to_float(train.images.to(device))
        y = train.labels.to(device)
        trainer = CudaGraphTrainer(model, x, y, settings, batch)
        generator = torch.Generator(device=device).manual_seed(seed)
        for _ in range(epochs):
            trainer.epoch(len(y), generator)
        _sync(device)
        return
    fit(
        model,
        train,
        epochs=epochs,
        batch_size=batch,
        optimizer=make_optimizer(settings.optimizer, model.parameters(), settings.lr(batch)),
        seed=seed,
        device=device,
        channels_last=settings.channels_last,
        bf16=settings.bf16,
        compile=settings.compile_train,
        progress=False,
    )


def accuracy_check(
    config: RunConfig,
    data_dir: str | Path | None = None,
    *,
    dataset: data.Cifar10 | None = None,
    seeds: Sequence[int] = ACCURACY_SEEDS,
    epochs: int = ACCURACY_EPOCHS,
) -> dict[str, Any]:
    """Test accuracy after ``epochs`` epochs on CIFAR-10, parity mode against fast mode, per seed.

    Parity: ``fit`` with its defaults (batch 32). Fast: ``train_fast`` with
    ``config.settings("fast")``; its test pass uses the same bf16/channels_last options.
    ``dataset``, when given, is CIFAR-10 already loaded from ``data_dir``.
    """
    device = config.torch_device
    root = data.resolve_data_dir(data_dir)
    ds = dataset if dataset is not None else data.load_cifar10(root)
    fast = config.settings("fast")
    result: dict[str, Any] = {
        "data_dir": str(root),
        "num_train": len(ds.train),
        "num_test": len(ds.test),
        "epochs": epochs,
        "seeds": list(seeds),
        "fast_settings": fast.describe("train", fast.batch_size) | {"batch_size": fast.batch_size},
    }
    for mode in MODES:
        accs, seconds = [], []
        for seed in seeds:
            print(f"  accuracy: {mode}, seed {seed}", file=sys.stderr, flush=True)
            model = seeded_model(config.model, seed)
            t0 = time.perf_counter()
            with tf32_allowed(config.settings(mode).tf32):
                if mode == "parity":
                    fit(model, ds.train, epochs=epochs, seed=seed, device=device, progress=False)
                    res = evaluate(model, ds.test)
                else:
                    train_fast(model, ds.train, fast, epochs=epochs, seed=seed, device=device)
                    res = evaluate(model, ds.test, bf16=fast.bf16, channels_last=fast.channels_last)
                _sync(device)
            seconds.append(time.perf_counter() - t0)
            accs.append(res.accuracy)
        result[mode] = {
            "test_accuracy": accs,
            "mean": statistics.mean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "seconds": seconds,
        }
    result["difference_points"] = 100 * (result["fast"]["mean"] - result["parity"]["mean"])
    return result


def format_accuracy(acc: Mapping[str, Any]) -> list[str]:
    p, f = acc["parity"], acc["fast"]
    diff = acc["difference_points"]
    verdict = "met" if accuracy_holds(acc) else "NOT met"
    return [
        "",
        f"Accuracy (test split, {acc['num_test']:,} images; {acc['epochs']} epochs on "
        f"{acc['num_train']:,} training images from `{acc['data_dir']}`; seeds "
        f"{', '.join(map(str, acc['seeds']))}; mean ± sd):",
        f"- parity (fit defaults, batch 32): {100 * p['mean']:.2f} ± {100 * p['sd']:.2f}% "
        f"({statistics.mean(p['seconds']):.1f} s per run)",
        f"- fast (batch {acc['fast_settings']['batch_size']}, {_settings_text({'framework': 'torch_cnn', 'settings': acc['fast_settings']})}): "
        f"{100 * f['mean']:.2f} ± {100 * f['sd']:.2f}% ({statistics.mean(f['seconds']):.1f} s per run)",
        f"- fast − parity: **{diff:+.2f} points** (target: within 2 points below): {verdict}",
    ]


def profile_train(config: RunConfig, mode: str, batch_size: int, steps: int = 20) -> str:
    """The top operators (by self time) of ``steps`` training steps in ``mode``, as a text table."""
    from torch.profiler import ProfilerActivity, profile

    device = config.torch_device
    settings = config.settings(mode)
    images = steps * batch_size
    g = torch.Generator().manual_seed(config.seed)
    x = torch.rand(images, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, data.NUM_CLASSES, (images,), generator=g).to(device)
    model = seeded_model(config.model, config.seed, device=device)
    call = _train_call(model, x, y, settings, batch_size, config.seed)
    call(images)  # warm-up (and compilation)
    _sync(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        call(images)
        _sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table: str = prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40)
    return table


# ---------------------------------------------------------------------------------------------
# Command line


def _csv(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; received {text!r}"
            )
        return items

    return parse


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="model_cifar10", choices=list_models())
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default %(default)s")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write the records (a JSON list) to FILE; with --accuracy, fast mode's training "
        "record at its batch carries the check as 'accuracy_check'",
    )
    p.add_argument(
        "--frameworks",
        type=_csv(FRAMEWORKS),
        default=FRAMEWORKS,
        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all; Keras ones "
        "are skipped with a note when not installed)",
    )
    p.add_argument(
        "--batch-size", type=int, default=KERAS_FIT_BATCH_SIZE, help="small batch (%(default)s)"
    )
    p.add_argument(
        "--large-batch",
        type=int,
        help=", ".join(f"{b} on {d}" for d, b in LARGE_BATCH.items()) + " by default",
    )
    p.add_argument(
        "--images",
        type=int,
        help="images per repeat: "
        + ", ".join(f"{n:,} on {d}" for d, n in IMAGES_PER_REPEAT.items())
        + " by default",
    )
    p.add_argument("--repeats", type=int, default=REPEATS, help="default %(default)s")
    p.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS, help="default %(default)s")
    p.add_argument("--threads", type=int, help="intra-op threads (default: torch's, one per core)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--fast",
        type=parse_overrides,
        default={},
        metavar="KEY=VALUE,...",
        help="override fast mode's settings, e.g. bf16=false,compile_train=true,batch_size=512",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a few steps per path ({QUICK}): checks that every path runs, not for numbers",
    )
    p.add_argument(
        "--accuracy",
        action="store_true",
        help=f"also train {ACCURACY_EPOCHS} epochs on CIFAR-10 in parity and fast mode "
        f"(seeds {ACCURACY_SEEDS}; minutes) and compare test accuracy",
    )
    p.add_argument("--accuracy-seeds", type=int, default=len(ACCURACY_SEEDS), metavar="N")
    p.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    p.add_argument("--profile", action="store_true", help="append an operator profile of training")
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="also write the report into FILE, between the lines "
        "'<!-- bench MODEL DEVICE start -->' and '<!-- bench MODEL DEVICE end -->'",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    quick = QUICK if args.quick else {}
    return RunConfig(
        model=args.model,
        device=args.device,
        frameworks=tuple(args.frameworks),
        small_batch=args.batch_size,
        large_batch=args.large_batch or quick.get("large_batch"),
        images=args.images or quick.get("images"),
        repeats=quick.get("repeats", args.repeats),
        warmup_steps=quick.get("warmup_steps", args.warmup_steps),
        threads=args.threads,
        seed=args.seed,
        fast_overrides=args.fast,
    )


def _is_checked_fast_train(rec: Mapping[str, Any], accuracy: Mapping[str, Any]) -> bool:
    """The record the accuracy check speaks for: fast mode's training at the checked batch."""
    return (rec["framework"], rec["mode"], rec["task"]) == ("torch_cnn", "fast", "train") and (
        rec["batch_size"] == accuracy["fast_settings"]["batch_size"]
    )


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, print the markdown report, write ``--json``."""
    config = config_from_args(args)
    if config.threads:  # before machine(), which measures the matmul peak with them
        torch.set_num_threads(config.threads)
    argv = getattr(args, "argv", None)
    command = shlex.join(["torch-cnn", *(["bench", *argv] if argv is not None else sys.argv[1:])])
    info = machine(config)
    dataset, data_dir = None, None
    if args.accuracy:  # find (or download) and read the data now, not after minutes of timing
        data_dir = data.resolve_data_dir(args.data_dir)
        dataset = data.load_cifar10(data_dir)
    print(f"benchmarking {config.model} on {info['device']}", file=sys.stderr, flush=True)
    records, notes = run(config, info["gemm_gflops"])
    extra: list[str] = []
    accuracy = None
    if args.accuracy:
        print("accuracy check", file=sys.stderr, flush=True)
        seeds = tuple(range(args.accuracy_seeds))
        accuracy = accuracy_check(config, data_dir, dataset=dataset, seeds=seeds)
        extra += format_accuracy(accuracy)
    if args.profile:
        for mode, batch in (
            ("parity", config.small_batch),
            ("fast", config.settings("fast").batch_size),
        ):
            print(f"profile: {mode} train batch {batch}", file=sys.stderr, flush=True)
            extra += [
                "",
                f"Profile: {mode} training at batch {batch}, 20 steps:",
                "",
                "```",
                profile_train(config, mode, batch).rstrip(),
                "```",
            ]
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    report = format_report(records, notes, config, info, command, extra, accuracy)
    print(report, end="")
    if args.readme:
        write_readme_section(args.readme, readme_key(config), report)
        print(f"wrote the report into {args.readme}", file=sys.stderr)
    if args.json:
        for rec in records:
            rec["machine"] = {k: info[k] for k in ("cpu", "logical_cpus", "threads", "date")}
            rec["command"] = command
            if accuracy is not None and _is_checked_fast_train(rec, accuracy):
                rec["accuracy_check"] = accuracy
        text = json.dumps(records, indent=2, allow_nan=False) + "\n"
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {len(records)} records to {args.json}", file=sys.stderr)
    return 0


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench`` on a ``parser.add_subparsers()`` object."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark training and inference against Keras (TensorFlow and torch backends)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/bench.py``: the ``bench`` command on its own."""
    parser = argparse.ArgumentParser(
        prog="bench.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    _add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return cmd_bench(args)


__all__ = [
    "FRAMEWORKS",
    "RECORD_KEYS",
    "CudaGraphTrainer",
    "RunConfig",
    "Settings",
    "accuracy_check",
    "add_command",
    "cpu_peak",
    "fast_settings",
    "format_table",
    "forward_flops",
    "main",
    "measure_torch",
    "parity_settings",
    "run",
]
