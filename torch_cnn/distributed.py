"""Training on several processes with ``torch.distributed``: what ``torchrun`` sets up, and the few collectives ``fit`` needs.

``torchrun --nproc-per-node=N -m torch_cnn train ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (and the rendezvous address) in their
environment. ``process_group`` reads them, initialises the default process group (gloo for
the CPU; nccl for CUDA, one GPU per rank, ``cuda:LOCAL_RANK``) and takes it down again.
Without them it does nothing, so the same code runs as one ordinary process. Once a group is
initialised, ``train.fit`` and ``train.evaluate`` use it (``DistributedDataParallel``, sharded
batches, reduced metrics); the helpers below are no-ops without one.

Nothing happens at import time: no environment is read, no group is created, no device set.

>>> launch_from_env({}) is None  # not started by torchrun
True
>>> launch_from_env({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
Launch(rank=1, local_rank=1, world_size=2)
>>> world_size(), rank(), is_main()  # no process group in this process
(1, 0, True)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

# How long init_process_group waits for every rank, and any collective for the slowest rank,
# before raising instead of hanging (torch's own defaults are 30 min for gloo, 10 for nccl).
DEFAULT_TIMEOUT = timedelta(minutes=10)
LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE")  # what torchrun sets for each worker

_T = TypeVar("_T")


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a ``torchrun`` launch: its global and local rank, the world size."""

    rank: int
    local_rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The ``Launch`` that torchrun's variables describe, or ``None`` when none of them is set.

    Raises ``ValueError`` when only some are set, or they do not make sense together.
    """
    env = os.environ if environ is None else environ
    present = [name for name in LAUNCH_VARIABLES if name in env]
    if not present:
        return None
    if len(present) < len(LAUNCH_VARIABLES):
        missing = [name for name in LAUNCH_VARIABLES if name not in env]
        raise ValueError(
            f"torchrun sets {', '.join(LAUNCH_VARIABLES)}; received only {', '.join(present)} "
            f"(missing {', '.join(missing)})"
        )
    try:
        launch = Launch(*(int(env[name]) for name in LAUNCH_VARIABLES))
    except ValueError as exc:
        got = ", ".join(f"{name}={env[name]!r}" for name in LAUNCH_VARIABLES)
        raise ValueError(f"torchrun's variables must be integers; received {got}") from exc
    if not (0 <= launch.rank < launch.world_size and launch.local_rank >= 0):
        raise ValueError(
            f"expected 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0; received RANK={launch.rank}, "
            f"LOCAL_RANK={launch.local_rank}, WORLD_SIZE={launch.world_size}"
        )
    return launch


def backend_for(device: torch.device | str) -> str:
    """``'nccl'`` for a CUDA device, ``'gloo'`` for the CPU."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def rank_device(device: torch.device | str, launch: Launch) -> torch.device:
    """The device rank ``launch.rank`` trains on: ``cuda`` becomes ``cuda:LOCAL_RANK``, one GPU per rank.

    >>> rank_device("cuda", Launch(rank=5, local_rank=1, world_size=8))
    device(type='cuda', index=1)
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        return dev
    if dev.index is not None and dev.index != launch.local_rank:
        raise ValueError(
            f"under torchrun each rank uses the GPU of its local rank (cuda:{launch.local_rank} "
            f"for LOCAL_RANK={launch.local_rank}); received device {dev}. Pass --device cuda "
            f"and choose GPUs with CUDA_VISIBLE_DEVICES."
        )
    return torch.device("cuda", launch.local_rank)


@contextmanager
def process_group(
    device: torch.device | str,
    *,
    timeout: timedelta = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
) -> Iterator[torch.device]:
    """Initialise the default process group from torchrun's variables; yields the device of this rank.

    Without torchrun's variables it yields ``device`` and does nothing else. Otherwise it
    picks the backend from the device (``backend_for``), binds CUDA ranks to
    ``cuda:LOCAL_RANK`` and initialises the group with ``timeout``. On a normal exit the ranks
    meet at a barrier and the group is destroyed. On an exception the group is left to the
    process's exit: destroying it while other ranks are inside a collective can deadlock
    (see pytorch/torchtitan#1342), and torchrun stops the other ranks when this one fails.
    """
    launch = launch_from_env(environ)
    if launch is None:
        yield torch.device(device)
        return
    if dist.is_initialized():
        raise RuntimeError(
            "process_group: a default process group is already initialised in this process"
        )
    dev = rank_device(device, launch)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        backend_for(dev),
        timeout=timeout,
        rank=launch.rank,
        world_size=launch.world_size,
        device_id=dev if dev.type == "cuda" else None,
    )
    yield dev
    dist.barrier()
    dist.destroy_process_group()


def run_in_process_group(
    fn: Callable[[torch.device], _T],
    device: torch.device | str,
    *,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> _T | None:
    """``fn(device)``, inside ``process_group(device)`` when torchrun started this process.

    Under torchrun an exception is also recorded (torch's ``record``) where torchrun's
    failure summary reads it, so the summary shows the failing rank's own traceback. Without
    torchrun it is just ``fn(device)``. (``None`` if ``fn`` raises ``SystemExit(0)``, as
    ``record`` has it.)
    """
    if launch_from_env() is None:
        return fn(torch.device(device))
    from torch.distributed.elastic.multiprocessing.errors import record

    def in_group() -> _T:
        with process_group(device, timeout=timeout) as dev:
            return fn(dev)

    return record(in_group)()


def is_initialized() -> bool:
    """Whether a default process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """The number of ranks in the default group; 1 without one."""
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group; 0 without one."""
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files and prints (also without a group)."""
    return rank() == 0


def backend() -> str | None:
    """The default group's backend (``'gloo'``, ``'nccl'``), or ``None`` without one."""
    return str(dist.get_backend()) if is_initialized() else None


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place; returns it. Unchanged without a group."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled; tensors arrive on the CPU). ``obj`` without a group."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every rank gets here. Nothing without a group."""
    if is_initialized():
        dist.barrier()


@contextmanager
def local_main_first() -> Iterator[None]:
    """Run the block on each machine's local rank 0 first, then on its other ranks.

    For work that fills a per-machine cache, such as downloading CIFAR-10: the first rank
    downloads, the others find the files. An ordinary single process just runs the block.
    """
    launch = launch_from_env()
    first = launch is None or launch.local_rank == 0
    if not first:
        barrier()
    yield
    if first:
        barrier()


__all__ = [
    "DEFAULT_TIMEOUT",
    "Launch",
    "all_reduce_sum",
    "backend",
    "backend_for",
    "barrier",
    "broadcast_object",
    "is_initialized",
    "is_main",
    "launch_from_env",
    "local_main_first",
    "process_group",
    "rank",
    "rank_device",
    "run_in_process_group",
    "world_size",
]
