"""``CudaGraphTrainer``: fast mode's training engine on a GPU, one CUDA graph per step.

A benchmark-only engine beside ``torch_cnn.train.fit`` (which it does not replace): the
whole dataset on the GPU, a fixed batch shape, a capturable optimizer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from torch_cnn.models.base import KerasStyleNet


class CudaGraphTrainer:
    """Training steps replayed from one CUDA graph: gather, forward, loss, backward, Adam.

    The whole dataset stays on the GPU; a step copies the batch's indices into a static
    buffer and replays the graph, which gathers the batch itself. The last partial batch of
    an epoch is dropped (as in airbench), so every step has the captured shape. Capture
    follows PyTorch's whole-network recipe: three warm-up steps on a side stream, then
    ``torch.cuda.graph``; the weights and optimizer state are then put back in place to
    what they were before the warm-up, so the graph trains from the model as given.

    ``optimizer`` must be built with ``capturable=True`` (``torch.optim.Adam``'s fused or
    foreach kernels): its step count and step size stay on the GPU, inside the graph.
    ``bf16`` trains under bf16 autocast, ``channels_last`` in that memory format, and
    ``compile`` runs the forward pass through ``torch.compile`` (without its own graphs).
    """

    def __init__(
        self,
        model: KerasStyleNet,
        x: torch.Tensor,
        y: torch.Tensor,
        optimizer: torch.optim.Optimizer,
        batch_size: int,
        *,
        bf16: bool = False,
        channels_last: bool = False,
        compile: bool = False,
    ) -> None:
        if not optimizer.defaults.get("capturable"):
            raise ValueError(
                "CudaGraphTrainer needs an optimizer built with capturable=True (its step "
                f"must run inside the graph); received {type(optimizer).__name__} with "
                f"capturable={optimizer.defaults.get('capturable')!r}"
            )
        self.model, self.x, self.y, self.batch_size = model, x, y, batch_size
        self.device = x.device
        self.bf16 = bf16
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.optimizer = optimizer
        self.logits: Callable[[torch.Tensor], torch.Tensor] = (
            torch.compile(model.logits, mode="max-autotune-no-cudagraphs")
            if compile
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
