"""torch_cnn's side of the benchmark: what each mode runs (``Settings``), the timing harness
(``time_calls``), and one torch_cnn measurement (``measure_torch``)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from benchmarks.common import (
    FRAMEWORKS,
    IMAGES_PER_REPEAT,
    LARGE_BATCH,
    MB,
    REPEATS,
    WARMUP_STEPS,
    PeakRSS,
    record,
    round_up,
    rss_mb,
)
from benchmarks.cuda_graph import CudaGraphTrainer
from benchmarks.hardware import bf16_supported, sync
from torch_cnn import data
from torch_cnn.env import describe_device
from torch_cnn.env import versions as torch_versions
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.optim import KERAS_ADAM_LEARNING_RATE, create_optimizer
from torch_cnn.train import KERAS_FIT_BATCH_SIZE, fit, seeded_model

MODES = ("parity", "fast")
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


def parity_settings(device: torch.device, batch_size: int | None = None) -> Settings:
    """``fit``'s defaults: float32, NCHW, Keras's Adam at 1e-3, eager."""
    return Settings("parity", LARGE_BATCH[device.type] if batch_size is None else batch_size)


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
        if mode == "parity":
            return parity_settings(self.torch_device, self.large)
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
        sync(device)
        first_two.append(time.perf_counter() - t0)
    memory.reset()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call(images)
        sync(device)
        seconds.append(time.perf_counter() - t0)
    return Timing(first_two[0], first_two[1], seconds, memory.peak_mb(), baseline, memory.kind)


# ---------------------------------------------------------------------------------------------
# Measuring torch_cnn


def train_call(
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


def infer_call(
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


def random_data(images: int, seed: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``images`` random images in [0, 1) and labels, built on the CPU, then moved."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(images, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, data.NUM_CLASSES, (images,), generator=g).to(device)
    return x, y


def measure_torch(
    config: RunConfig, settings: Settings, task: str, batch_size: int
) -> dict[str, Any]:
    """One torch_cnn record: ``task`` ('train' or 'infer') at ``batch_size`` with ``settings``."""
    device = config.torch_device
    images = round_up(config.images_per_repeat, batch_size)
    x, y = random_data(images, config.seed, device)
    model = seeded_model(config.model, config.seed, device=device)
    call = (
        train_call(model, x, y, settings, batch_size, config.seed)
        if task == "train"
        else infer_call(model, x, settings, batch_size)
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


def profile_train(config: RunConfig, mode: str, batch_size: int, steps: int = 20) -> str:
    """The top operators (by self time) of ``steps`` training steps in ``mode``, as a text table."""
    from torch.profiler import ProfilerActivity, profile

    device = config.torch_device
    settings = config.settings(mode)
    images = steps * batch_size
    x, y = random_data(images, config.seed, device)
    model = seeded_model(config.model, config.seed, device=device)
    call = train_call(model, x, y, settings, batch_size, config.seed)
    call(images)  # warm-up (and compilation)
    sync(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        call(images)
        sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table: str = prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40)
    return table
