"""Training and evaluation: Keras's ``fit``/``evaluate`` recipe, written natively in PyTorch.

``fit`` mirrors what ``model.fit(x, y, batch_size=32, epochs=10, shuffle=True,
validation_data=...)`` does in Keras 3: a fresh permutation every epoch, the last
partial batch kept, one optimizer step per batch, and per-epoch ``loss`` and
``accuracy`` reported as Keras reports them (see ``fit``). The loss is computed from
``model.logits(x)`` (``train.objective``: cross-entropy for a softmax or linear head,
binary cross-entropy for one sigmoid unit), so a model whose ``forward`` returns
probabilities is trained stably from its logits, as Keras does.

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
from pathlib import Path
from typing import Any

import torch

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
from torch_cnn.train.objective import Data, as_tensors, objective_for
from torch_cnn.train.progress import Progress
from torch_cnn.train.results import EvalResult, History
from torch_cnn.train.run import fit_run_dir
from torch_cnn.train.step import (
    BatchCallback,
    TrainStep,
    at_least_float32,
    autocast,
    memory_format,
    shard,
)

__all__ = [
    "EVAL_BATCH_SIZE",
    "KERAS_FIT_BATCH_SIZE",
    "default_optimizer",
    "evaluate",
    "fit",
    "optimizer_hparams",
    "seeded_model",
]

KERAS_FIT_BATCH_SIZE = 32  # keras Model.fit's default batch_size
EVAL_BATCH_SIZE = 256

EpochCallback = Callable[[int, Mapping[str, float]], object]


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
    objective = objective_for(model)
    dev = torch.device(device) if device is not None else _model_device(model)
    model.to(dev)
    x, y = as_tensors(split, dev, _model_dtype(model), objective)
    n = len(y)
    across_ranks = _use_process_group(distributed, "evaluate")
    if across_ranks:
        world, rank = _dist.world_size(), _dist.rank()
        x, y = shard(x, world, rank), shard(y, world, rank)
    fmt = memory_format(channels_last)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    preds = []
    # A rank whose shard is empty (fewer images than ranks) still runs its empty batch.
    batches = data.iterate_batches(x, y, batch_size, shuffle=False) if len(y) else iter([(x, y)])
    try:
        for xb, yb in batches:
            with autocast(dev, bf16):
                logits = model.logits(xb.contiguous(memory_format=fmt))
            logits = at_least_float32(logits)
            loss_sum += objective.loss(logits, yb, reduction="sum").double()
            preds.append(objective.predict(logits))
    finally:
        model.train(was_training)
    k = objective.num_classes
    counts = torch.bincount(y * k + torch.cat(preds), minlength=k * k)
    if across_ranks:
        _dist.all_reduce_sum(loss_sum)
        _dist.all_reduce_sum(counts)
    confusion = counts.reshape(k, k).cpu()
    per_class = [
        float(confusion[i, i]) / float(row_sum)
        if (row_sum := int(confusion[i].sum()))
        else math.nan
        for i in range(k)
    ]
    return EvalResult(
        loss=float(loss_sum) / n,
        accuracy=int(confusion.diagonal().sum()) / n,
        per_class_accuracy=per_class,
        confusion=confusion.tolist(),
        num_samples=n,
    )


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Training


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
    class_names: Sequence[str] | None = None,
) -> History:
    """Train ``model`` in place, as Keras's ``model.fit(..., shuffle=True)``; returns the history.

    - **Loss**: the batch mean of ``objective_for(model)``'s loss on ``model.logits(x)``:
      ``F.cross_entropy`` for a softmax or linear head (the same value as Keras's categorical
      cross-entropy on softmax outputs, computed stably), binary cross-entropy from the logit
      of one sigmoid unit. Seed and converted models (``from_keras``) alike; a converted
      model's frozen layers (``trainable=False`` in Keras) get no gradient and a frozen
      BatchNormalization keeps its moving statistics, as in Keras.
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
    - **Run directory**: with ``checkpoint_dir``, when training ends ``fit`` writes the run
      directory ``torch-cnn train`` writes (``torch_cnn.train.run``): ``history.json``,
      ``curves.png``, ``model.safetensors`` and, when validation data was given,
      ``metrics.json`` and ``confusion.png`` of the last validation (labelled with
      ``class_names``), besides ``last.pt``.
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
    objective = objective_for(model)
    across_ranks = _use_process_group(distributed, "fit")
    world, rank = (_dist.world_size(), _dist.rank()) if across_ranks else (1, 0)
    dev = torch.device(device) if device is not None else default_device()
    dtype = _model_dtype(model)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # untyped
    x, y = as_tensors(train, dev, dtype, objective)
    val_xy = as_tensors(val, dev, dtype, objective) if val is not None else None
    augmenter = data.Augment() if augment is True else (augment or None)
    if optimizer is None:
        optimizer = default_optimizer(model.parameters())
    generator = torch.Generator().manual_seed(seed)
    config = _run_config(
        model, optimizer, augmenter, dev, dtype, len(y), len(val_xy[1]) if val_xy else 0,
        epochs=epochs, batch_size=batch_size, seed=seed, world=world, across_ranks=across_ranks,
        channels_last=channels_last, bf16=bf16, compile=compile,
    ) | {"loss": objective.describe()}  # fmt: skip
    history = History()
    history.config = config
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    # Dropout and noise layers draw from torch's global RNG: here a stream of the run's own,
    # seeded with ``seed`` (and restored on resume) inside fork_rng, so a CPU run repeats bit
    # for bit and the caller's RNG state is left as it was.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        start_epoch = 0
        if resume and ckpt_path is not None:
            ckpt = read_for_resume(ckpt_path, across_ranks)
            if ckpt is not None:
                start_epoch = restore(
                    ckpt_path, ckpt, config, model, optimizer, generator, history, dev
                )
            elif progress and rank == 0:
                print(f"no checkpoint at {ckpt_path}; starting from epoch 1", file=sys.stderr)
        if start_epoch > epochs:
            raise ValueError(
                f"{ckpt_path} holds {start_epoch} epochs; epochs={epochs} asks for fewer, so there "
                f"is nothing to train (pass epochs >= {start_epoch} to continue)"
            )
        step = TrainStep(
            model, optimizer, dev, bf16, channels_last, compile, across_ranks, objective
        )
        _train_epochs(
            step, model, (x, y), val_xy, history, range(start_epoch + 1, epochs + 1),
            batch_size=batch_size * world, generator=generator, augmenter=augmenter,
            ckpt_path=ckpt_path, progress=progress, on_epoch_end=on_epoch_end,
            on_batch_end=on_batch_end, eval_batch_size=batch_size,
        )  # fmt: skip
    if ckpt_path is not None and rank == 0:
        fit_run_dir(ckpt_path.parent, model, history, class_names)
    return history


def _train_epochs(
    step: TrainStep,
    model: TorchCnnModel,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor] | None,
    history: History,
    epochs: range,
    *,
    batch_size: int,
    generator: torch.Generator,
    augmenter: data.Augment | None,
    ckpt_path: Path | None,
    progress: bool,
    on_epoch_end: EpochCallback | None,
    on_batch_end: BatchCallback | None,
    eval_batch_size: int,
) -> None:
    """The epochs of ``fit``: train, validate, record, checkpoint, report; stop on NaN."""
    x, y = train
    report = Progress(
        progress and step.rank == 0, epochs.stop - 1, data.num_batches(len(y), batch_size)
    )
    model.train()
    try:
        for epoch in epochs:
            t0 = time.perf_counter()
            report.start(epoch)
            batches = data.iterate_batches(x, y, batch_size, generator=generator, augment=augmenter)
            logs = step.epoch(batches, report, on_batch_end, epoch)
            if val is not None and step.diverged is None:
                result = evaluate(
                    model, val, batch_size=eval_batch_size, bf16=step.bf16,
                    channels_last=step.fmt == torch.channels_last, distributed=step.across_ranks,
                )  # fmt: skip
                model.train()
                logs |= {"val_loss": result.loss, "val_accuracy": result.accuracy}
                history.final_eval = result
            seconds = time.perf_counter() - t0
            history.append(logs, seconds)
            if step.diverged is not None:  # the last good checkpoint stays; this epoch is not saved
                e, i = step.diverged
                history.stopped = (
                    f"the loss became {logs['loss']} at epoch {e}, step {i}; training stopped "
                    "(Keras's TerminateOnNaN)"
                    + (f"; {ckpt_path} holds epoch {e - 1}" if ckpt_path and e > 1 else "")
                )
                report.close()
                if progress and step.rank == 0:
                    print(history.stopped, file=sys.stderr)
                break
            if ckpt_path is not None:
                if step.rank == 0:
                    state = checkpoint_state(
                        model, step.optimizer, generator, step.device, epoch, history,
                        history.config,
                    )  # fmt: skip
                    save_checkpoint(ckpt_path, state)
                if step.across_ranks:
                    _dist.barrier()  # on_epoch_end sees the checkpoint written, on every rank
            report.end(epoch, logs, seconds)
            if on_epoch_end is not None:
                on_epoch_end(epoch, logs)
    except KeyboardInterrupt:
        report.close()
        if progress and step.rank == 0 and ckpt_path is not None:
            done = history.epochs
            print(
                f"interrupted; {ckpt_path} holds epoch {done}" if done else "interrupted",
                file=sys.stderr,
            )
        raise
    finally:
        report.close()


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
