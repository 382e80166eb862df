"""Model registry: ``create_model`` and ``list_models`` over named builders (timm / torchvision style)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

_Builder = Callable[..., nn.Module]
_B = TypeVar("_B", bound=_Builder)
_MODELS: dict[str, _Builder] = {}


def register_model(name: str) -> Callable[[_B], _B]:
    """Register a keyword-only builder under ``name``; a duplicate name raises."""

    def wrap(fn: _B) -> _B:
        if name in _MODELS:
            raise ValueError(f"a model named {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models() -> list[str]:
    """Names of the registered models, sorted: ``['model_cifar10', 'model_cnn']``."""
    return sorted(_MODELS)


def create_model(
    name: str,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A freshly initialised model (Keras initialisers: glorot_uniform kernels, zero biases).

    >>> import torch, torch_cnn
    >>> model = torch_cnn.create_model("model_cnn")
    >>> model(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    """
    try:
        builder = _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}. Known models: {', '.join(list_models())}"
        ) from None
    return builder(device=device, dtype=dtype, **kwargs)
