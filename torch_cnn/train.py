"""Training and evaluation: Keras's ``fit``/``evaluate`` recipe, written natively in PyTorch.

``fit`` mirrors what ``model.fit(x, y, batch_size=32, epochs=10, shuffle=True,
validation_data=...)`` does in Keras 3: a fresh permutation every epoch, the last
partial batch kept, one optimizer step per batch, and per-epoch ``loss`` and
``accuracy`` reported as Keras reports them (see ``fit``). The loss is always
``F.cross_entropy(model.logits(x), y)``, so ``model_cnn`` (whose ``forward``
returns softmax probabilities) is trained stably from its logits.

The whole dataset sits on the device; batches are tensor slices (``data.iterate_batches``).
Every random number the loop draws (the permutation, the augmentation) comes from one
CPU ``torch.Generator`` seeded with ``seed``; nothing reads or writes the global RNG. The
model is given already initialised: build it with ``seeded_model`` for a run that one seed
determines from start to end.

>>> import torch
>>> from torch_cnn.train import fit, seeded_model
>>> model = seeded_model("model_cnn", seed=0)
>>> x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
>>> history = fit(model, (x, y), epochs=2, batch_size=16, device="cpu", progress=False)
>>> sorted(history), len(history["loss"])
(['accuracy', 'loss'], 2)
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from torch_cnn import data
from torch_cnn import distributed as _dist  # `distributed` is fit's and evaluate's parameter
from torch_cnn.checkpoint import CheckpointError, atomic_write
from torch_cnn.models.base import KerasStyleNet
from torch_cnn.registry import create_model

KERAS_FIT_BATCH_SIZE = 32  # keras Model.fit's default batch_size
CHECKPOINT_NAME = "last.pt"
CHECKPOINT_FORMAT = "torch_cnn.train_checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
EVAL_BATCH_SIZE = 256
# Settings that change which numbers a resumed run computes; a checkpoint must agree on them,
# and on the global batch (batch_size × world_size; see _restore). A key that an older
# checkpoint lacks is not checked.
_RESUME_MUST_MATCH = (
    "model",
    "dtype",
    "seed",
    "augment",
    "optimizer",
    "optimizer_hparams",
    "num_train",
)

Data = data.Split | tuple[torch.Tensor, torch.Tensor]
EpochCallback = Callable[[int, Mapping[str, float]], object]
BatchCallback = Callable[[int, int], object]


def optimizer_hparams(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """Each parameter group's hyperparameters (lr, betas, eps, ...), as plain values.

    >>> from torch_cnn.optim import KerasAdam
    >>> optimizer_hparams(KerasAdam([torch.nn.Parameter(torch.zeros(1))], lr=0.5))[0]["lr"]
    0.5
    """

    def plain(value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return str(value)  # a torch.dtype, a tensor-valued lr

    return [
        {k: plain(v) for k, v in sorted(group.items()) if k not in ("params", "step")}
        for group in optimizer.param_groups
    ]


def default_optimizer(params: Any) -> torch.optim.Optimizer:
    """``fit``'s default optimizer: Keras's ``Adam()`` (learning rate 1e-3, epsilon 1e-7), exactly."""
    from torch_cnn.optim import KERAS_ADAM_LEARNING_RATE, KerasAdam

    return KerasAdam(params, lr=KERAS_ADAM_LEARNING_RATE)


class History(dict[str, list[float]]):
    """Keras's ``History.history``: ``loss``, ``accuracy`` (and ``val_loss``, ``val_accuracy``), one value per epoch.

    ``seconds`` holds each epoch's wall-clock time (training and validation, not the checkpoint).
    """

    def __init__(
        self, values: Mapping[str, Sequence[float]] | None = None, seconds: Sequence[float] = ()
    ) -> None:
        super().__init__({k: [float(v) for v in vs] for k, vs in (values or {}).items()})
        self.seconds = [float(s) for s in seconds]

    @property
    def epochs(self) -> int:
        """How many epochs the history covers."""
        return len(self.get("loss", []))

    def append(self, logs: Mapping[str, float], seconds: float) -> None:
        for key, value in logs.items():
            self.setdefault(key, []).append(float(value))
        self.seconds.append(float(seconds))


@dataclass(frozen=True)
class EvalResult:
    """What ``evaluate`` measures over a whole split.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as class ``j``;
    ``per_class_accuracy[i]`` is ``confusion[i][i] / sum(confusion[i])`` (NaN for a class
    with no images).
    """

    loss: float
    accuracy: float
    per_class_accuracy: list[float]
    confusion: list[list[int]]
    num_samples: int


# ---------------------------------------------------------------------------------------------
# Models, devices and data


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seeded_model(
    name: str,
    seed: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> KerasStyleNet:
    """``create_model(name)`` with its Keras initialisers drawn from ``torch.manual_seed(seed)``.

    The weights are drawn on the CPU (so CPU and CUDA runs start from the same bits) inside
    ``torch.random.fork_rng``: the caller's global RNG state is left as it was.

    >>> a, b = seeded_model("model_cnn", 1), seeded_model("model_cnn", 1)
    >>> torch.equal(a.fc.weight, b.fc.weight)
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_model(name, dtype=dtype)
    if not isinstance(model, KerasStyleNet):
        raise TypeError(f"{name!r} is not a torch_cnn KerasStyleNet; received {type(model)}")
    return model.to(device) if device is not None else model


def _model_dtype(model: torch.nn.Module) -> torch.dtype:
    param = next(model.parameters(), None)
    return param.dtype if param is not None else torch.float32


def as_tensors(
    split: Data, device: torch.device | str, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` on ``device``: float images in [0, 1] of ``dtype`` (uint8 ones divided by 255), int64 labels.

    uint8 images travel to the device as uint8 (4x less to copy) and are converted there.
    """
    if isinstance(split, data.Split):
        x, y = split.images, split.labels
    elif isinstance(split, tuple) and len(split) == 2:
        x, y = split
    else:
        raise TypeError(
            f"expected a data.Split or an (images, labels) tuple; received {type(split).__name__}"
        )
    if len(x) != len(y):
        raise ValueError(f"images and labels differ in length: {len(x)} images, {len(y)} labels")
    x = x.to(device)
    x = data.to_float(x, dtype) if x.dtype == torch.uint8 else x.to(dtype)
    return x, y.to(device=device, dtype=torch.int64)


def _autocast(device: torch.device, bf16: bool) -> AbstractContextManager[object]:
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) up to float32 for the loss; float32 and float64 untouched.

    A float64 model's loss must stay float64: ``.float()`` here would round it to float32
    and move a float64 run off Keras's trajectory by ~1e-7 within one epoch.
    """
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def _memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def _use_process_group(requested: bool | None, what: str) -> bool:
    """Whether ``fit``/``evaluate`` work across the default process group.

    ``None``: when one is initialised with more than one rank. ``True``: always (a one-rank
    group included), and it must be initialised. ``False``: never.
    """
    if requested is None:
        return _dist.world_size() > 1
    if requested and not _dist.is_initialized():
        raise RuntimeError(
            f"{what}(distributed=True) needs an initialised process group; received none. Start "
            f"the script with torchrun and enter torch_cnn.distributed.process_group first."
        )
    return requested


def _shard(t: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s part of ``t`` split into ``world`` contiguous parts, sizes differing by at most 1.

    The parts are disjoint and cover ``t`` once; with fewer rows than ranks some are empty.
    """
    return t.tensor_split(world)[rank]


# ---------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(
    model: KerasStyleNet,
    split: Data,
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str | None = None,
    bf16: bool = False,
    channels_last: bool = False,
    distributed: bool | None = None,
) -> EvalResult:
    """Loss, accuracy, per-class accuracy and confusion matrix of ``model`` on ``split``.

    The loss is the mean cross-entropy over all images, computed from logits. The model
    runs on ``device`` (moved there if it is elsewhere; default: where the model is), in eval
    mode for the duration.

    With an initialised process group of more than one rank (``distributed=None``; ``True``
    forces it, ``False`` turns it off) this is a collective: every rank must call it with the
    same split. Each evaluates a disjoint contiguous shard, the loss sums and confusion
    counts are all-reduced, and every rank returns the same result over the whole split,
    each image counted exactly once.

    >>> model = seeded_model("model_cnn", 0)
    >>> r = evaluate(model, (torch.rand(20, 3, 32, 32), torch.arange(20) % 10))
    >>> sum(map(sum, r.confusion)), len(r.per_class_accuracy)
    (20, 10)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    param = next(model.parameters())
    dev = torch.device(device) if device is not None else param.device
    model.to(dev)
    x, y = as_tensors(split, dev, param.dtype)
    n = len(y)
    if n == 0:
        raise ValueError("evaluate needs at least one image; received an empty split")
    across_ranks = _use_process_group(distributed, "evaluate")
    if across_ranks:
        world, rank = _dist.world_size(), _dist.rank()
        x, y = _shard(x, world, rank), _shard(y, world, rank)
    fmt = _memory_format(channels_last)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    preds = []
    # A rank whose shard is empty (fewer images than ranks) still runs its empty batch: the
    # (0, num_classes) logits give the confusion matrix its shape.
    batches = data.iterate_batches(x, y, batch_size, shuffle=False) if len(y) else iter([(x, y)])
    try:
        for xb, yb in batches:
            with _autocast(dev, bf16):
                logits = model.logits(xb.contiguous(memory_format=fmt))
            logits = _at_least_float32(logits)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
            preds.append(logits.argmax(dim=1))
    finally:
        model.train(was_training)
    num_classes = int(logits.shape[1])
    pred = torch.cat(preds)
    counts = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    if across_ranks:
        _dist.all_reduce_sum(loss_sum)
        _dist.all_reduce_sum(counts)
    confusion = counts.reshape(num_classes, num_classes).cpu()
    per_class = [
        float(confusion[i, i]) / float(row_sum)
        if (row_sum := int(confusion[i].sum()))
        else math.nan
        for i in range(num_classes)
    ]
    correct = int(confusion.diagonal().sum())
    return EvalResult(
        loss=float(loss_sum) / n,
        accuracy=correct / n,
        per_class_accuracy=per_class,
        confusion=confusion.tolist(),
        num_samples=n,
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A training checkpoint written by ``fit``, read with ``torch.load(weights_only=True)`` onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        got = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: not a torch_cnn training checkpoint (format {got!r}); expected "
            f"format {CHECKPOINT_FORMAT!r}"
        )
    if ckpt.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format_version {ckpt.get('format_version')!r}; this torch_cnn "
            f"reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return ckpt


def model_from_checkpoint(
    path: str | os.PathLike[str], *, device: torch.device | str | None = None
) -> KerasStyleNet:
    """The model a training checkpoint holds (built from its recorded name, loaded strictly)."""
    ckpt = load_checkpoint(path)
    model = create_model(ckpt["config"]["model"])
    if not isinstance(model, KerasStyleNet):  # pragma: no cover - every registered model is one
        raise CheckpointError(f"{path}: {ckpt['config']['model']!r} is not a KerasStyleNet")
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {model.name!r}: {exc}") from exc
    return model.to(device) if device is not None else model


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    # Temp file, then rename: an interrupted write never replaces the last good checkpoint.
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _cpu_state(state: Any) -> Any:
    """A copy of a (nested) state dict with every tensor detached on the CPU."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: _cpu_state(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_cpu_state(v) for v in state)
    return state


# ---------------------------------------------------------------------------------------------
# Progress


class _Progress:
    """A tqdm bar per epoch when stderr is a terminal; otherwise one plain line per epoch."""

    def __init__(self, enabled: bool, epochs: int, steps: int) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.epochs, self.steps = epochs, steps
        self.bar: Any = None

    def start(self, epoch: int) -> None:
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.steps, desc=f"epoch {epoch}/{self.epochs}", unit="batch", leave=True
            )

    def update(self, loss: float | None, accuracy: float | None) -> None:
        if self.bar is not None:
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", accuracy=f"{accuracy:.4f}", refresh=False)
            self.bar.update(1)

    def end(self, epoch: int, logs: Mapping[str, float], seconds: float) -> None:
        if not self.enabled:
            return
        text = "  ".join(f"{k} {v:.4f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.set_postfix_str(f"{text}  {seconds:.1f}s")
            self.close()
        else:
            print(f"epoch {epoch}/{self.epochs}  {text}  {seconds:.1f}s", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ---------------------------------------------------------------------------------------------
# Training


class _LogitsModule(torch.nn.Module):
    """``model.logits`` as a module's ``forward``: what ``DistributedDataParallel`` wraps.

    DDP hooks ``forward`` only, and the training forward is ``logits`` (``model_cnn``'s
    ``forward`` ends in a softmax). The parameters are ``model``'s own, so the optimizer
    built on ``model.parameters()`` steps the all-reduced gradients and ``model`` ends trained.
    """

    def __init__(self, model: KerasStyleNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


def fit(
    model: KerasStyleNet,
    train: Data,
    val: Data | None = None,
    *,
    epochs: int = 10,
    batch_size: int = KERAS_FIT_BATCH_SIZE,
    optimizer: torch.optim.Optimizer | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    channels_last: bool = False,
    bf16: bool = False,
    compile: bool = False,
    augment: bool | data.Augment = False,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    on_batch_end: BatchCallback | None = None,
    distributed: bool | None = None,
) -> History:
    """Train ``model`` in place, as Keras's ``model.fit(..., shuffle=True)``; returns the history.

    - **Loss**: ``F.cross_entropy(model.logits(x), y)``, the batch mean, for both models
      (the same value as Keras's categorical cross-entropy on softmax outputs, computed stably).
    - **Reported metrics**, as Keras 3's trainer: ``loss`` is the mean of the batch losses
      weighted by batch size (its ``Mean`` loss tracker, updated with ``sample_weight=batch
      size``); ``accuracy`` is the fraction of training images classified correctly during the
      epoch, each counted with the weights it had when its batch was seen. ``val_loss`` and
      ``val_accuracy`` come from ``evaluate`` after the epoch, with the same batch size.
    - **Randomness**: the per-epoch permutation and the augmentation draw from one CPU
      ``torch.Generator`` seeded with ``seed``; the global RNG is neither read nor seeded.
      Given the same initial weights (see ``seeded_model``), a CPU run is reproducible bit
      for bit. CUDA runs are too only with ``torch.use_deterministic_algorithms(True)``.
    - **Device**: ``device`` (default: CUDA when available, else CPU). The model moves there and
      the data is copied there once. ``channels_last``, ``bf16`` (autocast; the loss stays in
      float32) and ``compile`` (``torch.compile`` of ``model.logits``) are off by default.
    - **Optimizer**: ``default_optimizer`` (Keras's Adam) unless ``optimizer`` is given.
    - **Checkpoints**: with ``checkpoint_dir``, after every epoch ``checkpoint_dir/last.pt`` is
      replaced atomically by the model, optimizer and generator states, the epoch, the history
      and the config (tensors and plain containers only: it loads with ``weights_only=True``).
      ``resume=True`` continues from it (starting fresh if there is none) and ends with exactly
      the weights an uninterrupted CPU run would have. A ``KeyboardInterrupt`` leaves the last
      complete checkpoint in place and is re-raised.
    - **Callbacks**: ``on_epoch_end(epoch, logs)`` after the epoch's checkpoint is written
      (``epoch`` counts from 1), ``on_batch_end(epoch, batch_index)`` after each optimizer step.
    - **Progress** (``progress=True``): a tqdm bar with running loss and accuracy when stderr is
      a terminal, else one line per epoch on stderr.
    - **Several processes** (``distributed=None``: when a process group of more than one rank
      is initialised, see ``torch_cnn.distributed``; ``True`` forces it, ``False`` turns it
      off). Every rank calls ``fit`` with the same data, seed and ``batch_size``, the batch
      *per rank*: a global batch is ``batch_size × world_size`` images. The model trains
      through ``DistributedDataParallel`` (which starts every rank from rank 0's weights).
      Every rank draws the same permutation (and augmentation) as a single process with the
      global batch size would, and takes its contiguous part of each global batch
      (``Tensor.tensor_split``: disjoint, sizes differing by at most one; in a last partial
      batch of ``m`` images, possibly none). Each rank's summed loss is scaled by
      ``world_size / m`` before ``backward``, so DDP's average of the ranks' gradients is the
      gradient of the mean loss over all ``m`` images: one step equals a single-process step
      on the global batch, up to rounding. The epoch's ``loss`` and ``accuracy`` are summed
      over ranks; validation is ``evaluate``'s collective over disjoint shards, so every rank
      returns the same history. Only rank 0 prints progress and writes the checkpoint (the
      ranks meet at a barrier after it). ``resume`` reads the checkpoint on rank 0 and
      broadcasts it, so only rank 0 needs the directory; it may be resumed with another
      world size if the global batch is unchanged (the permutation depends on that alone).
      Callbacks run on every rank.
    """
    if epochs < 0:
        raise ValueError(f"epochs must be non-negative; received epochs={epochs}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    across_ranks = _use_process_group(distributed, "fit")
    world, rank = (_dist.world_size(), _dist.rank()) if across_ranks else (1, 0)
    is_main = rank == 0
    dev = torch.device(device) if device is not None else default_device()
    dtype = _model_dtype(model)
    fmt = _memory_format(channels_last)
    model.to(dev)
    if channels_last:
        model.to(memory_format=fmt)  # type: ignore[call-overload]  # untyped in torch's stubs
    x, y = as_tensors(train, dev, dtype)
    val_xy = as_tensors(val, dev, dtype) if val is not None else None
    augmenter = data.Augment() if augment is True else (augment or None)
    if optimizer is None:
        optimizer = default_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(seed)

    config: dict[str, Any] = {
        "model": model.name,
        "epochs": epochs,
        "batch_size": batch_size,
        "world_size": world,
        "global_batch_size": batch_size * world,
        "backend": _dist.backend() if across_ranks else None,
        "seed": seed,
        "augment": (
            None if augmenter is None else {"padding": augmenter.padding, "flip": augmenter.flip}
        ),
        "optimizer": type(optimizer).__name__,
        "optimizer_hparams": optimizer_hparams(optimizer),
        "device": str(dev),
        "dtype": str(dtype).removeprefix("torch."),
        "channels_last": channels_last,
        "bf16": bf16,
        "compile": compile,
        "num_train": len(y),
        "num_val": len(val_xy[1]) if val_xy is not None else 0,
    }
    history = History()
    start_epoch = 0
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    ckpt = _read_for_resume(ckpt_path, across_ranks) if resume and ckpt_path is not None else None
    if ckpt is not None and ckpt_path is not None:
        start_epoch = _restore(ckpt_path, ckpt, config, model, optimizer, generator, history, dev)
    elif resume and progress and is_main:
        print(f"no checkpoint at {ckpt_path}; starting from epoch 1", file=sys.stderr)

    logits_fn: Callable[[torch.Tensor], torch.Tensor] = model.logits
    if across_ranks:
        # Built after the restore: DDP broadcasts rank 0's weights to the other ranks.
        logits_fn = torch.nn.parallel.DistributedDataParallel(
            _LogitsModule(model), device_ids=[dev] if dev.type == "cuda" else None
        )
    if compile:
        logits_fn = torch.compile(logits_fn)
    global_batch = batch_size * world
    steps = data.num_batches(len(y), global_batch)
    report = _Progress(progress and is_main, epochs, steps)
    refresh = max(1, steps // 50)  # running values for the bar: ~50 device syncs per epoch
    model.train()
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            report.start(epoch)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
            correct = torch.zeros((), dtype=torch.int64, device=dev)
            seen = 0
            # Every rank gathers (and augments) the whole global batch, so the generator draws
            # what a single process would, then keeps its own part (a view).
            batches = data.iterate_batches(
                x, y, global_batch, generator=generator, augment=augmenter
            )
            for step, (xb, yb) in enumerate(batches):
                m = len(yb)
                if across_ranks:
                    xb, yb = _shard(xb, world, rank), _shard(yb, world, rank)
                optimizer.zero_grad(set_to_none=True)
                with _autocast(dev, bf16):
                    logits = logits_fn(xb.contiguous(memory_format=fmt))
                if across_ranks:
                    # Summed over this rank's images and scaled by world/m: DDP averages over the
                    # ranks, so the gradient is that of the mean loss over the global batch,
                    # whatever this rank's share of it (a last partial batch may leave it none).
                    rank_sum = F.cross_entropy(_at_least_float32(logits), yb, reduction="sum")
                    (rank_sum * (world / m)).backward()  # type: ignore[no-untyped-call]
                    loss_sum += rank_sum.detach().double()
                else:
                    loss = F.cross_entropy(_at_least_float32(logits), yb)  # batch mean, as Keras
                    loss.backward()  # type: ignore[no-untyped-call]
                    loss_sum += loss.detach().double() * m
                optimizer.step()
                seen += len(yb)
                correct += (logits.detach().argmax(dim=1) == yb).sum()
                show = report.tty and (step % refresh == 0 or step == steps - 1)
                report.update(  # across ranks: rank 0's part of the epoch so far
                    float(loss_sum) / max(seen, 1) if show else None,
                    int(correct) / max(seen, 1) if show else None,
                )
                if on_batch_end is not None:
                    on_batch_end(epoch, step)
            if across_ranks:
                totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
                _dist.all_reduce_sum(totals)  # counts below 2**53 stay exact in float64
                logs = {
                    "loss": float(totals[0] / totals[2]),
                    "accuracy": float(totals[1] / totals[2]),
                }
            else:
                logs = {"loss": float(loss_sum) / seen, "accuracy": int(correct) / seen}
            if val_xy is not None:
                result = evaluate(
                    model,
                    val_xy,
                    batch_size=batch_size,
                    bf16=bf16,
                    channels_last=channels_last,
                    distributed=across_ranks,
                )
                model.train()
                logs |= {"val_loss": result.loss, "val_accuracy": result.accuracy}
            seconds = time.perf_counter() - t0
            history.append(logs, seconds)
            if ckpt_path is not None:
                if is_main:
                    _save_checkpoint(
                        ckpt_path,
                        _checkpoint_state(model, optimizer, generator, dev, epoch, history, config),
                    )
                if across_ranks:
                    _dist.barrier()  # on_epoch_end sees the checkpoint written, on every rank
            report.end(epoch, logs, seconds)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
    except KeyboardInterrupt:
        report.close()
        if progress and is_main and ckpt_path is not None:
            done = history.epochs
            print(
                f"interrupted; {ckpt_path} holds epoch {done}" if done else "interrupted",
                file=sys.stderr,
            )
        raise
    finally:
        report.close()
    return history


def _checkpoint_state(
    model: KerasStyleNet,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    device: torch.device,
    epoch: int,
    history: History,
    config: Mapping[str, Any],
) -> dict[str, Any]:
    rng: dict[str, torch.Tensor] = {"generator": generator.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "epoch": epoch,
        "model": _cpu_state(model.state_dict()),
        "optimizer": _cpu_state(optimizer.state_dict()),
        "rng": rng,
        "history": {k: list(v) for k, v in history.items()},
        "seconds": list(history.seconds),
        "config": dict(config),
    }


def _read_for_resume(path: Path, across_ranks: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, or ``None`` when there is none.

    Across ranks, rank 0 reads it and broadcasts it (or the reason it could not be read), so
    every rank restores the same state, or raises the same error, even where the others do
    not share rank 0's file system.
    """
    if not across_ranks:
        return load_checkpoint(path) if path.is_file() else None
    message: tuple[str, Any] = ("ok", None)
    if _dist.is_main():
        try:
            message = ("ok", load_checkpoint(path) if path.is_file() else None)
        except CheckpointError as exc:
            message = ("error", str(exc))
    kind, value = _dist.broadcast_object(message)
    if kind == "error":
        raise CheckpointError(value)
    ckpt: dict[str, Any] | None = value
    return ckpt


def _describe_batch(config: Mapping[str, Any]) -> str:
    world = config.get("world_size", 1)  # checkpoints from before distributed training: 1
    if world == 1:
        return f"batch_size={config['batch_size']}"
    return (
        f"batch_size={config['batch_size']} × world_size={world} "
        f"(global batch {config['batch_size'] * world})"
    )


def _restore(
    path: Path,
    ckpt: Mapping[str, Any],
    config: Mapping[str, Any],
    model: KerasStyleNet,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    history: History,
    device: torch.device,
) -> int:
    """Load a checkpoint into the run's objects; returns the number of epochs it completed."""
    saved = ckpt["config"]
    for key in _RESUME_MUST_MATCH:
        if key in saved and saved[key] != config[key]:
            raise CheckpointError(  # a ValueError
                f"cannot resume from {path}: it was written with {key}={saved.get(key)!r}; "
                f"received {key}={config[key]!r}"
            )
    # The batch order depends on the global batch alone, not on how it is split into ranks.
    if saved["batch_size"] * saved.get("world_size", 1) != config["global_batch_size"]:
        raise CheckpointError(
            f"cannot resume from {path}: it was written with {_describe_batch(saved)}; "
            f"received {_describe_batch(config)}"
        )
    model.load_state_dict(ckpt["model"], strict=True)
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["rng"]["generator"])
    if device.type == "cuda" and "cuda" in ckpt["rng"]:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], device)
    restored = History(ckpt["history"], ckpt["seconds"])
    history.clear()
    history.update(restored)
    history.seconds = restored.seconds
    epoch: int = ckpt["epoch"]
    return epoch


__all__ = [
    "CHECKPOINT_NAME",
    "EVAL_BATCH_SIZE",
    "KERAS_FIT_BATCH_SIZE",
    "EvalResult",
    "History",
    "as_tensors",
    "default_device",
    "default_optimizer",
    "evaluate",
    "fit",
    "load_checkpoint",
    "model_from_checkpoint",
    "seeded_model",
]
