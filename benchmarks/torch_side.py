"""torch_cnn's side of the benchmark: what each mode runs (``Settings``), the rows a run times
round by round (``TorchRow``), one torch_cnn measurement with all its repeats in a row
(``measure_torch``), and the operator profiles (``profile_infer``, ``profile_train``).

Modes: ``default`` is what a user gets without asking (``model(x)``, ``fit``'s defaults: float32,
the model's default layout, which is channels_last inside the model, Keras's Adam, eager);
``nchw`` the same with ``memory_format="contiguous"`` (the plain NCHW path, the default before
issue 15); ``compiled`` the default model under ``torch.compile`` (float32, inference only: the
opt-in switch for long inference runs); ``fast`` the opt-in bf16 mode (``fast_settings``)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torch_cnn
from benchmarks.common import (
    FRAMEWORKS,
    IMAGES_PER_REPEAT,
    LARGE_BATCH,
    MB,
    REPEATS,
    WARMUP_STEPS,
    PeakRSS,
    latency_calls,
    median_call_s,
    record,
    round_up,
    rss_mb,
)
from benchmarks.converted import CONVERTED_MODELS
from benchmarks.cuda_graph import CudaGraphTrainer
from benchmarks.hardware import bf16_supported, sync
from torch_cnn import data
from torch_cnn.env import describe_device
from torch_cnn.env import versions as torch_versions
from torch_cnn.models import KerasGraph, TorchCnnModel
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.optim import KERAS_ADAM_LEARNING_RATE, create_optimizer
from torch_cnn.train import KERAS_FIT_BATCH_SIZE, fit, seeded_model

MODES = ("default", "nchw", "compiled", "fast")
# The modes that train (``compiled`` is an inference switch: ``torch.compile(model)``).
TRAIN_MODES = ("default", "nchw", "fast")
# The benchmark's optimizer names (in its records and --fast), and what
# torch_cnn.optim.create_optimizer will call them.
OPTIMIZER_NAMES = {
    "keras_adam": "keras_adam",
    "adam_fused": "torch_adam_fused",
    "adam_foreach": "torch_adam_foreach",
}
OPTIMIZERS = tuple(OPTIMIZER_NAMES)
# Fast mode's training batch, the one its accuracy is checked at (see fast_settings).
FAST_RECIPE_BATCH = {"cpu": KERAS_FIT_BATCH_SIZE, "cuda": LARGE_BATCH["cuda"]}


# ---------------------------------------------------------------------------------------------
# What each torch_cnn mode runs


@dataclass(frozen=True)
class Settings:
    """How torch_cnn trains and predicts in one benchmark mode.

    ``batch_size`` is the mode's large batch. ``memory_format`` is the model's
    (``KerasStyleNet.memory_format``: "auto" is its default). With ``scale_lr`` the learning rate is Keras's
    1e-3 scaled by ``sqrt(batch / 32)`` (the square-root rule for Adam); batch 32 keeps 1e-3.
    ``compile_mode`` is passed to ``torch.compile`` (None: its default). ``cuda_graphs``
    captures the whole training step (gather, forward, loss, backward, fused Adam) in one
    CUDA graph; it needs a capturable optimizer (``adam_fused`` or ``adam_foreach``).
    """

    mode: str
    batch_size: int
    optimizer: str = "keras_adam"
    scale_lr: bool = False
    memory_format: str = "auto"
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
        """Whether CUDA may use TF32 for float32 convolutions and matmuls: in fast mode only."""
        return self.mode == "fast"

    def describe(self, task: str, batch_size: int) -> dict[str, Any]:
        """The settings a record of ``task`` at ``batch_size`` ran with."""
        out: dict[str, Any] = {
            "dtype": "float32",
            "tf32_on_cuda": self.tf32,
            "autocast": "bfloat16" if self.bf16 else None,
            "memory_format": "channels_last" if self.channels_last else "contiguous",
            "model_memory_format": self.memory_format,
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


def default_settings(device: torch.device, batch_size: int | None = None) -> Settings:
    """What a user gets without asking: float32, the model's default layout (channels_last
    inside the model for float32), ``fit``'s defaults (Keras's Adam at 1e-3), eager."""
    return Settings("default", LARGE_BATCH[device.type] if batch_size is None else batch_size)


def compiled_settings(device: torch.device, batch_size: int | None = None) -> Settings:
    """The default model, float32, under ``torch.compile`` (its default mode; on CUDA
    "reduce-overhead", CUDA graphs): inference only."""
    batch = LARGE_BATCH[device.type] if batch_size is None else batch_size
    mode = "reduce-overhead" if device.type == "cuda" else None
    return Settings("compiled", batch, compile_infer=True, compile_mode=mode)


def nchw_settings(device: torch.device, batch_size: int | None = None) -> Settings:
    """The default with ``memory_format="contiguous"``: the plain NCHW path."""
    batch = LARGE_BATCH[device.type] if batch_size is None else batch_size
    return Settings("nchw", batch, memory_format="contiguous")


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
        FAST_RECIPE_BATCH[device.type] if batch_size is None else batch_size,
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
            try:
                out[key] = int(value)
            except ValueError:
                raise ValueError(f"{key} takes an integer; received {value!r}") from None
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
    options: dict[str, Any] = {"lr": lr}
    if name != "keras_adam":
        options["capturable"] = capturable  # KerasAdam has no capturable state
    try:
        return create_optimizer(OPTIMIZER_NAMES[name], params, **options)
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}"
        ) from None


def graph_trainer(
    model: KerasStyleNet, x: torch.Tensor, y: torch.Tensor, settings: Settings, batch_size: int
) -> CudaGraphTrainer:
    """The ``CudaGraphTrainer`` that trains as ``settings`` say, at ``batch_size``."""
    optimizer = make_optimizer(
        settings.optimizer, model.parameters(), settings.lr(batch_size), capturable=True
    )
    return CudaGraphTrainer(
        model,
        x,
        y,
        optimizer,
        batch_size,
        bf16=settings.bf16,
        channels_last=settings.channels_last,
        compile=settings.compile_train,
    )


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
    # The zoo's converted models timed for inference and latency beside ``model``.
    converted: tuple[str, ...] = CONVERTED_MODELS
    latency: bool = True
    latency_calls: int = 0  # per latency repeat; 0: as many as fit in LATENCY_REPEAT_S
    # ``benchmarks.prepare``'s directory (the runner sets it): the weights every framework shares.
    prepared: Path | None = None

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def large(self) -> int:
        return self.large_batch or LARGE_BATCH[self.torch_device.type]

    @property
    def images_per_repeat(self) -> int:
        return self.images or IMAGES_PER_REPEAT[self.torch_device.type]

    @property
    def intra_op_threads(self) -> int:
        """``threads``, or torch's current number (one per core unless set)."""
        return self.threads or torch.get_num_threads()

    def settings(self, mode: str) -> Settings:
        if mode == "default":
            return default_settings(self.torch_device, self.large)
        if mode == "nchw":
            return nchw_settings(self.torch_device, self.large)
        if mode == "compiled":
            return compiled_settings(self.torch_device, self.large)
        # Fast mode's recipe batch (what --accuracy trains): the seeds' on the CPU, the large
        # one on CUDA; --fast batch_size=N overrides it.
        recipe = self.small_batch if self.torch_device.type == "cpu" else self.large
        overrides = {"batch_size": recipe, **self.fast_overrides}
        return fast_settings(self.torch_device, **overrides)


# ---------------------------------------------------------------------------------------------
# Timing


@contextlib.contextmanager
def tf32_allowed(allowed: bool) -> Iterator[None]:
    """Allow or forbid TF32 on CUDA (cuDNN allows it by default) inside the block, then restore."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


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
            return torch.cuda.memory_allocated(self.device) / MB
        return rss_mb()

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.rss.reset()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MB
        return self.rss.peak_mb()


# ---------------------------------------------------------------------------------------------
# Measuring torch_cnn


def train_call(
    model: TorchCnnModel,
    x: torch.Tensor,
    y: torch.Tensor,
    settings: Settings,
    batch_size: int,
    seed: int,
) -> Callable[[int], object]:
    """``call(n)``: one epoch over the first ``n`` images, as ``settings`` trains."""
    device = x.device
    model.memory_format = settings.memory_format  # type: ignore[assignment]  # checked there
    if settings.cuda_graphs and device.type == "cuda":
        assert isinstance(model, KerasStyleNet)
        generator = torch.Generator(device=device).manual_seed(seed)
        trainers: list[CudaGraphTrainer] = []

        def replay(n: int) -> object:
            if not trainers:  # capture on the first call, so that compile_s includes it
                trainers.append(graph_trainer(model, x, y, settings, batch_size))
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


def forward_fn(model: TorchCnnModel, settings: Settings) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s forward pass as ``settings`` infer: its layout, compiled or not, in eval mode.

    Call it under ``inference_context(settings, device)``. The input is converted to
    channels_last outside the model only in fast mode (whose parameters are channels_last
    too, as ``fit(channels_last=True)`` leaves them); the other modes hand the model NCHW
    images, as a user does.
    """
    model.eval()
    model.memory_format = settings.memory_format  # type: ignore[assignment]  # checked there
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # untyped
    forward: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(model, mode=settings.compile_mode) if settings.compile_infer else model
    )
    if not settings.channels_last:
        return forward

    def to_channels_last(x: torch.Tensor) -> torch.Tensor:
        return forward(x.contiguous(memory_format=torch.channels_last))

    return to_channels_last


def inference_context(settings: Settings, device: torch.device) -> contextlib.ExitStack:
    """``inference_mode`` and, in fast mode, bf16 autocast: how every inference row runs."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.bf16))
    return stack


def infer_call(
    model: TorchCnnModel, x: torch.Tensor, settings: Settings, batch_size: int
) -> Callable[[int], object]:
    """``call(n)``: ``model(x)`` over the first ``n`` images, every output kept (as ``predict``)."""
    device = x.device
    forward = forward_fn(model, settings)
    graphs = (
        settings.compile_infer
        and device.type == "cuda"
        and "reduce-overhead" in str(settings.compile_mode)
    )
    with torch.no_grad():
        classes = model(x[:1]).shape[1:]
    out = torch.empty(len(x), *classes, device=device)

    def call(n: int) -> object:
        with inference_context(settings, device):
            for i in range(0, n, batch_size):
                if graphs:  # the graph's output buffer is reused by the next replay
                    torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
                out[i : i + batch_size] = forward(x[i : i + batch_size])
        return out

    return call


_DATA: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}


def random_data(images: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` random images in [0, 1) and labels, built on the CPU, then moved.

    Kept once per (images, seed, device): the rows of a run share them (the resident memory
    of one copy, not one per row).
    """
    key = (images, seed, str(device))
    if key not in _DATA:
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(images, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, data.NUM_CLASSES, (images,), generator=g).to(device)
        _DATA[key] = x, y
    return _DATA[key]


def load_model(config: RunConfig, name: str, device: torch.device) -> TorchCnnModel:
    """The model the run times: the prepared file (Keras's weights) or, without one, the seed
    model with seeded initial weights."""
    if config.prepared is not None and (config.prepared / name / "torch.safetensors").is_file():
        model = torch_cnn.load(config.prepared / name / "torch.safetensors")
        assert isinstance(model, KerasStyleNet | KerasGraph)
        return model.to(device)
    if name not in torch_cnn.list_models():
        raise ValueError(f"{name!r} needs benchmarks.prepare's files (a converted model)")
    return seeded_model(name, config.seed, device=device)


def max_abs_diff(
    config: RunConfig, name: str, forward: Callable[[torch.Tensor], torch.Tensor],
    settings: Settings, device: torch.device,
) -> dict[str, float]:  # fmt: skip
    """``{"max_abs_diff": ...}``: ``forward`` on the prepared inputs against Keras's outputs."""
    if config.prepared is None or not (config.prepared / name / "io.npz").is_file():
        return {}
    with np.load(config.prepared / name / "io.npz") as io:
        x = torch.from_numpy(io["inputs"]).permute(0, 3, 1, 2).contiguous().to(device)
        expected = io["expected"]
    with inference_context(settings, device):
        got = forward(x).float().cpu().numpy()
    return {"max_abs_diff": float(np.abs(got - expected).max())}


class TorchRow:
    """One torch_cnn row of a run, set up once and timed one repeat at a time (``repeat``), so
    that a run can interleave its rows with the other frameworks' round by round.

    ``task`` is "train" (epochs through ``fit``), "infer" (``model(x)`` over the images in
    batches) or "latency" (``model(x)`` on one image: each repeat the median of many calls).
    Construction warms the row up: the first call is ``compile_s``, the second ``warmup_s``.
    """

    def __init__(
        self, config: RunConfig, settings: Settings, task: str, batch_size: int,
        model_name: str | None = None,
    ) -> None:  # fmt: skip
        self.config, self.settings, self.task, self.batch_size = config, settings, task, batch_size
        self.model_name = model_name or config.model
        self.device = device = config.torch_device
        self.images = 1 if task == "latency" else round_up(config.images_per_repeat, batch_size)
        model = load_model(config, self.model_name, device)
        self.memory = _Memory(device)
        self.baseline_mb = self.memory.current_mb()
        self.extra: dict[str, Any] = {}
        with tf32_allowed(settings.tf32):
            if task == "train":
                x, y = random_data(self.images, config.seed, device)
                self._call = train_call(model, x, y, settings, batch_size, config.seed)
                warm = min(config.warmup_steps * batch_size, self.images)
            elif task == "infer":
                x, _ = random_data(self.images, config.seed, device)
                self._call = infer_call(model, x, settings, batch_size)
                warm = min(config.warmup_steps * batch_size, self.images)
            else:
                self._call, warm = self._latency_call(model), 1
            self.first_two = [self._timed(warm) for _ in range(2)]
            if task != "train":
                forward = forward_fn(model, settings)
                self.extra = max_abs_diff(config, self.model_name, forward, settings, device)
        if task == "latency":
            self.calls = latency_calls(self.first_two[1], config.latency_calls)
            self.extra["calls_per_repeat"] = self.calls
        self.seconds: list[float] = []
        self.peak_mb = 0.0

    def _latency_call(self, model: TorchCnnModel) -> Callable[[int], object]:
        forward = forward_fn(model, self.settings)
        one, _ = random_data(1, self.config.seed, self.device)

        def call(n: int) -> object:
            with inference_context(self.settings, self.device):
                return forward(one)

        return call

    def _timed(self, n: int) -> float:
        t0 = time.perf_counter()
        self._call(n)
        sync(self.device)
        return time.perf_counter() - t0

    def repeat(self) -> float:
        """One timed repeat (an epoch, a pass over the images, or a latency median), in s."""
        self.memory.reset()
        with tf32_allowed(self.settings.tf32):
            if self.task == "latency":
                s = median_call_s(lambda: self._timed(1), self.calls)
            else:
                s = self._timed(self.images)
        self.peak_mb = max(self.peak_mb, self.memory.peak_mb())
        self.seconds.append(s)
        return s

    def record(self) -> dict[str, Any]:
        """The row's record over the repeats so far."""
        return record(
            framework="torch_cnn",
            mode=self.settings.mode,
            model=self.model_name,
            task=self.task,
            batch_size=self.batch_size,
            device=self.device.type,
            seconds=self.seconds,
            images_per_repeat=self.images,
            peak_memory_mb=self.peak_mb,
            memory_kind=self.memory.kind,
            baseline_memory_mb=round(self.baseline_mb, 1),
            compile_s=round(self.first_two[0], 3),
            warmup_s=round(self.first_two[1], 3),
            device_name=describe_device(self.device),
            settings=self.settings.describe(self.task, self.batch_size),
            threads={
                "intra_op": torch.get_num_threads(),
                "inter_op": torch.get_num_interop_threads(),
            },
            versions=torch_versions(),
            **self.extra,
        )


def measure_torch(
    config: RunConfig, settings: Settings, task: str, batch_size: int
) -> dict[str, Any]:
    """One torch_cnn record: ``task`` at ``batch_size`` with ``settings``, all repeats in a row."""
    row = TorchRow(config, settings, task, batch_size)
    for _ in range(config.repeats):
        row.repeat()
    return row.record()


def _profile_table(run: Callable[[], object], device: torch.device) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run()
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table: str = prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40)
    return table


def profile_infer(config: RunConfig, batch_size: int, calls: int = 10) -> str:
    """The top operators (by self time) of ``calls`` default-mode forward passes at
    ``batch_size``, as a text table."""
    device = config.torch_device
    settings = config.settings("default")
    model = load_model(config, config.model, device)
    forward = forward_fn(model, settings)
    x, _ = random_data(batch_size, config.seed, device)

    def run() -> None:
        with inference_context(settings, device):
            for _ in range(calls):
                forward(x)

    run()  # warm-up
    return _profile_table(run, device)


def profile_train(config: RunConfig, mode: str, batch_size: int, steps: int = 20) -> str:
    """The top operators (by self time) of ``steps`` training steps in ``mode``, as a text table."""

    device = config.torch_device
    settings = config.settings(mode)
    images = steps * batch_size
    x, y = random_data(images, config.seed, device)
    model = seeded_model(config.model, config.seed, device=device)
    call = train_call(model, x, y, settings, batch_size, config.seed)
    call(images)  # warm-up (and compilation)
    sync(device)
    return _profile_table(lambda: call(images), device)
