"""A Keras-style ``model.summary()`` for torch_cnn models (rows line up with Keras's)."""

from __future__ import annotations

from torch import nn

from torch_cnn.models.base import KerasStyleNet


def _keras_shape(shape: tuple[int, ...]) -> str:
    """Torch per-image shape → Keras's printed output shape: (C, H, W) → (None, H, W, C)."""
    dims = (*shape[1:], shape[0]) if len(shape) == 3 else shape
    return "(" + ", ".join(["None", *map(str, dims)]) + ")"


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.2f} {unit}"
        n_bytes /= 1024  # type: ignore[assignment]
    raise AssertionError


def summary(model: nn.Module) -> str:
    """A table of each Keras layer's torch module, output shape (as Keras prints it) and parameters.

    >>> import torch_cnn
    >>> print(torch_cnn.summary(torch_cnn.create_model("model_cnn")))  # doctest: +ELLIPSIS
    Model: "model_cnn"
    ...
    Total params: 15,120 (59.06 KB)
    ...

    Keras's functional models also print their InputLayer (0 parameters); torch
    has no such module, so the table starts at the first real layer, as
    Keras's Sequential summary does.
    """
    if not isinstance(model, KerasStyleNet):
        raise TypeError(f"summary needs a torch_cnn model; received {type(model).__name__}")
    shapes = model.output_shapes()
    rows = []
    for info, module in model.keras_layers():
        count = sum(p.numel() for p in module.parameters())
        label = f"{info.module} ({info.keras_class})"
        rows.append((label, _keras_shape(shapes[info.module]), f"{count:,}"))
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    n_bytes = sum(p.numel() * p.element_size() for p in params)
    t_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    w = (
        max(32, *(len(r[0]) + 2 for r in rows)),
        max(24, *(len(r[1]) + 2 for r in rows)),
        max(15, *(len(r[2]) + 2 for r in rows)),
    )
    rule = "─" * sum(w)
    lines = [
        f'Model: "{model.name}"',
        rule,
        f"{'Layer (type)':<{w[0]}}{'Output Shape':<{w[1]}}{'Param #':>{w[2]}}",
        "═" * sum(w),
    ]
    for label, shape, params_text in rows:
        lines.append(f"{label:<{w[0]}}{shape:<{w[1]}}{params_text:>{w[2]}}")
    lines += [
        rule,
        f"Total params: {total:,} ({_size(n_bytes)})",
        f"Trainable params: {trainable:,} ({_size(t_bytes)})",
        f"Non-trainable params: {total - trainable:,} ({_size(n_bytes - t_bytes)})",
    ]
    return "\n".join(lines)
