"""One training step per batch, and an epoch of them with Keras's running loss and accuracy."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext

import torch

from torch_cnn import distributed as _dist
from torch_cnn.models import TorchCnnModel
from torch_cnn.train.objective import Objective
from torch_cnn.train.progress import Progress

BatchCallback = Callable[[int, int], object]


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager[object]:
    if not bf16:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits (autocast) up to float32 for the loss; float32 and float64 untouched.

    A float64 model's loss must stay float64: ``.float()`` here would round it to float32
    and move a float64 run off Keras's trajectory by ~1e-7 within one epoch.
    """
    return logits.float() if logits.dtype in (torch.bfloat16, torch.float16) else logits


def memory_format(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def shard(t: torch.Tensor, world: int, rank: int) -> torch.Tensor:
    """Rank ``rank``'s part of ``t`` split into ``world`` contiguous parts, sizes differing by at most 1.

    The parts are disjoint and cover ``t`` once; with fewer rows than ranks some are empty.
    """
    return t.tensor_split(world)[rank]


class LogitsModule(torch.nn.Module):
    """``model.logits`` as a module's ``forward``: what ``DistributedDataParallel`` wraps.

    DDP hooks ``forward`` only, and the training forward is ``logits`` (a model ending in
    softmax returns probabilities from ``forward``). The parameters are ``model``'s own, so
    the optimizer built on ``model.parameters()`` steps the all-reduced gradients.
    """

    def __init__(self, model: TorchCnnModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.logits(x)


class TrainStep:
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
        objective: Objective,
    ) -> None:
        self.optimizer = optimizer
        self.objective = objective
        self.device = device
        self.bf16 = bf16
        self.fmt = memory_format(channels_last)
        self.across_ranks = across_ranks
        self.world, self.rank = (_dist.world_size(), _dist.rank()) if across_ranks else (1, 0)
        # Where the loss became NaN or infinite: (epoch, step counted from 1). On the CPU every
        # step is checked (the check costs nothing); elsewhere ~50 times an epoch (each check
        # waits for the device), so the step named is the first check that saw it.
        self.diverged: tuple[int, int] | None = None
        self.every_step = device.type == "cpu" and not across_ranks
        logits_fn: Callable[[torch.Tensor], torch.Tensor] = model.logits
        if across_ranks:
            # Built after any restore: DDP broadcasts rank 0's weights to the other ranks.
            logits_fn = torch.nn.parallel.DistributedDataParallel(
                LogitsModule(model), device_ids=[device] if device.type == "cuda" else None
            )
        self.logits_fn = torch.compile(logits_fn) if compile else logits_fn

    def __call__(
        self, xb: torch.Tensor, yb: torch.Tensor, m: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on this rank's part of a global batch of ``m`` images; returns the
        batch's summed loss (float64) and its logits."""
        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device, self.bf16):
            logits = self.logits_fn(xb.contiguous(memory_format=self.fmt))
        if self.across_ranks:
            # Summed over this rank's images and scaled by world/m: DDP averages over the
            # ranks, so the gradient is that of the mean loss over the global batch,
            # whatever this rank's share of it (a last partial batch may leave it none).
            rank_sum = self.objective.loss(at_least_float32(logits), yb, reduction="sum")
            (rank_sum * (self.world / m)).backward()  # type: ignore[no-untyped-call]
            loss_sum = rank_sum.detach().double()
        else:
            loss = self.objective.loss(at_least_float32(logits), yb)  # batch mean, as Keras
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
                xb, yb = shard(xb, self.world, self.rank), shard(yb, self.world, self.rank)
            batch_loss, logits = self(xb, yb, m)
            loss_sum += batch_loss
            seen += len(yb)
            correct += (self.objective.predict(logits.detach()) == yb).sum()
            if (self.every_step or i % refresh == 0) and not torch.isfinite(batch_loss):
                self.diverged = (epoch, i + 1)  # Keras's TerminateOnNaN: stop after this batch
            show = report.tty and (i % refresh == 0 or i == report.steps - 1)
            report.update(  # across ranks: rank 0's part of the epoch so far
                float(loss_sum) / max(seen, 1) if show else None,
                int(correct) / max(seen, 1) if show else None,
            )
            if on_batch_end is not None:
                on_batch_end(epoch, i)
            if self.diverged is not None:
                break
        if not self.across_ranks:
            return {"loss": float(loss_sum) / seen, "accuracy": int(correct) / seen}
        totals = torch.stack([loss_sum, correct.double(), loss_sum.new_tensor(seen)])
        _dist.all_reduce_sum(totals)  # counts below 2**53 stay exact in float64
        return {"loss": float(totals[0] / totals[2]), "accuracy": float(totals[1] / totals[2])}
