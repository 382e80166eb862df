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
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from torch_cnn import data
from torch_cnn import distributed as _dist  # `distributed` is fit's and evaluate's parameter
from torch_cnn.env import default_device
from torch_cnn.models import KerasStyleNet, TorchCnnModel
from torch_cnn.registry import create_model
from torch_cnn.train.checkpoint import (
    CHECKPOINT_NAME,
    checkpoint_state,
    read_for_resume,
    restore,
    save_checkpoint,
)
from torch_cnn.train.progress import Progress
from torch_cnn.train.results import EvalResult, History

KERAS_FIT_BATCH_SIZE = 32  # keras Model.fit's default batch_size
EVAL_BATCH_SIZE = 256

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


# ---------------------------------------------------------------------------------------------
# Models, devices and data


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
    model: TorchCnnModel,
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
# Training


class _LogitsModule(torch.nn.Module):
    """``model.logits`` as a module's ``forward``: what ``DistributedDataParallel`` wraps.

    DDP hooks ``forward`` only, and the training forward is ``logits`` (``model_cnn``'s
    ``forward`` ends in a softmax). The parameters are ``model``'s own, so the optimizer
    built on ``model.parameters()`` steps the all-reduced gradients and ``model`` ends trained.
    """

    def __init__(self, model: TorchCnnModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


def fit(
    model: TorchCnnModel,
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
    _check_fit_arguments(epochs, batch_size, resume, checkpoint_dir)
    across_ranks = _use_process_group(distributed, "fit")
    world, rank = (_dist.world_size(), _dist.rank()) if across_ranks else (1, 0)
    dev = torch.device(device) if device is not None else default_device()
    dtype = _model_dtype(model)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # untyped
    x, y = as_tensors(train, dev, dtype)
    val_xy = as_tensors(val, dev, dtype) if val is not None else None
    augmenter = data.Augment() if augment is True else (augment or None)
    if optimizer is None:
        optimizer = default_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    config = _run_config(
        model, optimizer, augmenter, dev, dtype, len(y), len(val_xy[1]) if val_xy else 0,
        epochs=epochs, batch_size=batch_size, seed=seed, world=world, across_ranks=across_ranks,
        channels_last=channels_last, bf16=bf16, compile=compile,
    )  # fmt: skip
    history = History()
    history.config = config
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    start_epoch = 0
    if resume and ckpt_path is not None:
        ckpt = read_for_resume(ckpt_path, across_ranks)
        if ckpt is not None:
            start_epoch = restore(
                ckpt_path, ckpt, config, model, optimizer, generator, history, dev
            )
        elif progress and rank == 0:
            print(f"no checkpoint at {ckpt_path}; starting from epoch 1", file=sys.stderr)

    step = _TrainStep(model, optimizer, dev, bf16, channels_last, compile, across_ranks)
    global_batch = batch_size * world
    report = Progress(progress and rank == 0, epochs, data.num_batches(len(y), global_batch))
    model.train()
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            t0 = time.perf_counter()
            report.start(epoch)
            batches = data.iterate_batches(
                x, y, global_batch, generator=generator, augment=augmenter
            )
            logs = step.epoch(batches, report, on_batch_end, epoch)
            if val_xy is not None:
                result = evaluate(
                    model, val_xy, batch_size=batch_size, bf16=bf16,
                    channels_last=channels_last, distributed=across_ranks,
                )  # fmt: skip
                model.train()
                logs |= {"val_loss": result.loss, "val_accuracy": result.accuracy}
            seconds = time.perf_counter() - t0
            history.append(logs, seconds)
            if ckpt_path is not None:
                if rank == 0:
                    state = checkpoint_state(
                        model, optimizer, generator, dev, epoch, history, config
                    )
                    save_checkpoint(ckpt_path, state)
                if across_ranks:
                    _dist.barrier()  # on_epoch_end sees the checkpoint written, on every rank
            report.end(epoch, logs, seconds)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
    except KeyboardInterrupt:
        report.close()
        if progress and rank == 0 and ckpt_path is not None:
            done = history.epochs
            print(
                f"interrupted; {ckpt_path} holds epoch {done}" if done else "interrupted",
                file=sys.stderr,
            )
        raise
    finally:
        report.close()
    return history


def _run_config(
    model: TorchCnnModel,
    optimizer: torch.optim.Optimizer,
    augmenter: data.Augment | None,
    device: torch.device,
    dtype: torch.dtype,
    num_train: int,
    num_val: int,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    world: int,
    across_ranks: bool,
    channels_last: bool,
    bf16: bool,
    compile: bool,
) -> dict[str, Any]:
    """The run's settings: what ``last.pt`` records, ``resume`` checks and ``metrics.json`` holds."""
    return {
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
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "channels_last": channels_last,
        "bf16": bf16,
        "compile": compile,
        "num_train": num_train,
        "num_val": num_val,
    }


def _check_fit_arguments(
    epochs: int, batch_size: int, resume: bool, checkpoint_dir: str | os.PathLike[str] | None
) -> None:
    if epochs < 0:
        raise ValueError(f"epochs must be non-negative; received epochs={epochs}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")


class _TrainStep:
    """One optimizer step per batch, and an epoch's Keras-style loss and accuracy.

    Holds what every step shares: the forward function (``model.logits``, wrapped in
    ``DistributedDataParallel`` across ranks and compiled on request), the optimizer and
    the numerics (device, autocast, memory format).
    """

    def __init__(
        self,
        model: TorchCnnModel,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        bf16: bool,
        channels_last: bool,
        compile: bool,
        across_ranks: bool,
    ) -> None:
        self.optimizer = optimizer
        self.device = device
        self.bf16 = bf16
        self.fmt = _memory_format(channels_last)
        self.across_ranks = across_ranks
        self.world, self.rank = (_dist.world_size(), _dist.rank()) if across_ranks else (1, 0)
        logits_fn: Callable[[torch.Tensor], torch.Tensor] = model.logits
        if across_ranks:
            # Built after any restore: DDP broadcasts rank 0's weights to the other ranks.
            logits_fn = torch.nn.parallel.DistributedDataParallel(
                _LogitsModule(model), device_ids=[device] if device.type == "cuda" else None
            )
        self.logits_fn = torch.compile(logits_fn) if compile else logits_fn

    def __call__(
        self, xb: torch.Tensor, yb: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on this rank's part of a global batch of ``m`` images; returns the
        batch's summed loss (float64) and its logits."""
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.bf16):
            logits = self.logits_fn(xb.contiguous(memory_format=self.fmt))
        if self.across_ranks:
            # Summed over this rank's images and scaled by world/m: DDP averages over the
            # ranks, so the gradient is that of the mean loss over the global batch,
            # whatever this rank's share of it (a last partial batch may leave it none).
            rank_sum = F.cross_entropy(_at_least_float32(logits), yb, reduction="sum")
            (rank_sum * (self.world / m)).backward()  # type: ignore[no-untyped-call]
            loss_sum = rank_sum.detach().double()
        else:
            loss = F.cross_entropy(_at_least_float32(logits), yb)  # batch mean, as Keras
            loss.backward()  # type: ignore[no-untyped-call]
            loss_sum = loss.detach().double() * m
        self.optimizer.step()
        return loss_sum, logits

    def epoch(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        report: Progress,
        on_batch_end: BatchCallback | None,
        epoch: int,
    ) -> dict[str, float]:
        """Train on every batch; the epoch's ``loss`` and ``accuracy`` as Keras reports them."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        refresh = max(1, report.steps // 50)  # running values for the bar: ~50 syncs per epoch
        # Every rank gathers (and augments) the whole global batch, so the generator draws
        # what a single process would, then keeps its own part (a view).
        for i, (xb, yb) in enumerate(batches):
            m = len(yb)
            if self.across_ranks:
                xb, yb = _shard(xb, self.world, self.rank), _shard(yb, self.world, self.rank)
            batch_loss, logits = self(xb, yb, m)
            loss_sum += batch_loss
            seen += len(yb)
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            show = report.tty and (i % refresh == 0 or i == report.steps - 1)
            report.update(  # across ranks: rank 0's part of the epoch so far
                float(loss_sum) / max(seen, 1) if show else None,
                int(correct) / max(seen, 1) if show else None,
            )
            if on_batch_end is not None:
                on_batch_end(epoch, i)
        if not self.across_ranks:
            return {"loss": float(loss_sum) / seen, "accuracy": int(correct) / seen}
        totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
        _dist.all_reduce_sum(totals)  # counts below 2**53 stay exact in float64
        return {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2])}


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
    "optimizer_hparams",
    "seeded_model",
]
