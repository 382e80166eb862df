"""What training and evaluation return: Keras's ``History`` and an evaluation's numbers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class History(dict[str, list[float]]):
    """Keras's ``History.history``: ``loss``, ``accuracy`` (and ``val_loss``, ``val_accuracy``), one value per epoch.

    ``seconds`` holds each epoch's wall-clock time (training and validation, not the checkpoint);
    ``config`` the run's settings as ``fit`` recorded them (model, batch, seed, optimizer, ...).
    """

    def __init__(
        self, values: Mapping[str, Sequence[float]] | None = None, seconds: Sequence[float] = ()
    ) -> None:
        super().__init__({k: [float(v) for v in vs] for k, vs in (values or {}).items()})
        self.seconds = [float(s) for s in seconds]
        self.config: dict[str, Any] = {}  # the run's settings, as fit recorded them
        self.stopped: str | None = None  # why training stopped early (a NaN loss), if it did
        self.final_eval: EvalResult | None = None  # the last validation, in full

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
