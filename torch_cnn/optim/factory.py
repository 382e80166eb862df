"""One factory for the project's optimizers: ``create_optimizer(name, params, **hparams)``.

Keras's optimizers exactly (``keras_*``) and torch's Adam with Keras's hyperparameters
(``torch_adam*``: lr 1e-3, betas (0.9, 0.999), eps 1e-7), which is *not* Keras's Adam
(epsilon after the bias correction, see ``KerasAdam``) but is faster where fused kernels
or CUDA graphs pay.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.optimizer import ParamsT

from torch_cnn.optim.keras_optimizers import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KERAS_ADAM_EPSILON,
    KERAS_ADAM_LEARNING_RATE,
    KerasAdam,
    KerasAdamW,
    KerasRMSprop,
    KerasSGD,
)

_TORCH_ADAM_HPARAMS = ("lr", "betas", "eps", "amsgrad", "capturable")


@dataclass(frozen=True)
class _Entry:
    build: Callable[..., torch.optim.Optimizer]
    hparams: tuple[str, ...]  # the keywords create_optimizer accepts for it
    summary: str


def _keywords(cls: type[torch.optim.Optimizer]) -> tuple[str, ...]:
    return tuple(n for n in inspect.signature(cls).parameters if n != "params")


def _torch_adam(impl: str) -> Callable[..., torch.optim.Optimizer]:
    def build(params: ParamsT, **hparams: Any) -> torch.optim.Optimizer:
        kwargs: dict[str, Any] = {
            "lr": KERAS_ADAM_LEARNING_RATE,
            "betas": (KERAS_ADAM_BETA_1, KERAS_ADAM_BETA_2),
            "eps": KERAS_ADAM_EPSILON,
            **hparams,
        }
        if impl:
            kwargs[impl] = True
        return torch.optim.Adam(params, **kwargs)

    return build


_REGISTRY: dict[str, _Entry] = {
    "keras_adam": _Entry(KerasAdam, _keywords(KerasAdam), "keras.optimizers.Adam exactly"),
    "keras_adamw": _Entry(KerasAdamW, _keywords(KerasAdamW), "keras.optimizers.AdamW exactly"),
    "keras_sgd": _Entry(KerasSGD, _keywords(KerasSGD), "keras.optimizers.SGD exactly"),
    "keras_rmsprop": _Entry(
        KerasRMSprop, _keywords(KerasRMSprop), "keras.optimizers.RMSprop exactly"
    ),
    "torch_adam": _Entry(
        _torch_adam(""), _TORCH_ADAM_HPARAMS, "torch.optim.Adam with Keras's hyperparameters"
    ),
    "torch_adam_fused": _Entry(
        _torch_adam("fused"), _TORCH_ADAM_HPARAMS, "torch_adam with fused=True (one kernel)"
    ),
    "torch_adam_foreach": _Entry(
        _torch_adam("foreach"),
        _TORCH_ADAM_HPARAMS,
        "torch_adam with foreach=True (multi-tensor kernels)",
    ),
}


def list_optimizers() -> list[str]:
    """The names ``create_optimizer`` knows, sorted.

    >>> list_optimizers()[:3]
    ['keras_adam', 'keras_adamw', 'keras_rmsprop']
    """
    return sorted(_REGISTRY)


def optimizer_summary(name: str) -> str:
    """One line on what ``name`` builds (for help texts)."""
    return _entry(name).summary


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown optimizer {name!r}. Known optimizers: {', '.join(list_optimizers())}"
        )
    return _REGISTRY[name]


def create_optimizer(name: str, params: ParamsT, **hparams: Any) -> torch.optim.Optimizer:
    """The optimizer registered as ``name`` over ``params``; ``hparams`` override its defaults.

    - ``keras_adam``, ``keras_adamw``, ``keras_sgd``, ``keras_rmsprop``: ``KerasAdam``,
      ``KerasAdamW``, ``KerasSGD``, ``KerasRMSprop`` (Keras's defaults; hparams are their
      keywords: ``lr``, ``betas``, ``momentum``, ``weight_decay``, ``clipnorm``, ...).
    - ``torch_adam``, ``torch_adam_fused``, ``torch_adam_foreach``: ``torch.optim.Adam``
      with Keras's lr, betas and eps, in torch's default, fused or foreach implementation
      (hparams: ``lr``, ``betas``, ``eps``, ``amsgrad``, ``capturable``).

    An unknown name or hyperparameter raises ``ValueError`` listing the valid ones.

    >>> w = torch.nn.Parameter(torch.zeros(2))
    >>> type(create_optimizer("keras_sgd", [w], lr=0.1, momentum=0.9)).__name__
    'KerasSGD'
    """
    entry = _entry(name)
    unknown = sorted(set(hparams) - set(entry.hparams))
    if unknown:
        raise ValueError(
            f"optimizer {name!r} takes no hyperparameter(s) {unknown}. "
            f"Valid: {', '.join(entry.hparams)}"
        )
    return entry.build(params, **hparams)
