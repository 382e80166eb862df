"""Progress of a training run: a tqdm bar in a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


class Progress:
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
