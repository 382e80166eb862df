"""Keras optimizer configs and variables, read into and written from the Keras optimizers here.

A ``.keras`` archive saved after ``model.compile(...)`` (and ``fit``) holds the optimizer
twice over:

- ``config.json`` → ``"compile_config"`` → ``"optimizer"``: the serialized optimizer,
  ``{"module": "keras.optimizers", "class_name": "Adam", "config": {...}}`` (what
  ``get_config`` returns: ``learning_rate`` as a float, ``beta_1``, ``epsilon``, the base
  optimizer's ``weight_decay``, ``clipnorm``, ``use_ema``, ...);
- ``model.weights.h5`` → ``optimizer/vars/0`` … ``optimizer/vars/{n-1}``: the
  ``optimizer.variables`` list, in order (``BaseOptimizer.save_own_variables``).

That order (``keras/src/optimizers/base_optimizer.py``: ``__init__``, ``build``,
``add_optimizer_variables``; each optimizer's ``build``), for ``k`` trainable variables
``w_0 … w_{k-1}`` in ``model.trainable_variables`` order (each layer's kernel, then bias)::

    0            iterations       int64 scalar (steps taken)
    1            learning_rate    floatx scalar (absent for a schedule: not supported here)
    (use_ema's per-variable "average", gradient accumulators: not supported here)
    then the optimizer's slots, each shaped like its variable:
      Adam, AdamW  momentum_0, velocity_0, momentum_1, velocity_1, …   (interleaved)
                   then velocity_hat_0 … velocity_hat_{k-1}            (amsgrad only)
      SGD          momentum_0 … momentum_{k-1}                         (momentum != 0 only)
      RMSprop      velocity_0 … velocity_{k-1},
                   then momentum_0 … (momentum > 0), then average_gradient_0 … (centered)

``KerasOptimizer.keras_slots`` returns the same layout as blocks of state keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import ParamsT

from torch_cnn.optim.base import KerasOptimizer, SlotLayout
from torch_cnn.optim.ieee import NUMPY_DTYPES, as_dtype
from torch_cnn.optim.keras_optimizers import (
    KERAS_ADAM_BETA_1,
    KERAS_ADAM_BETA_2,
    KerasAdam,
    KerasAdamW,
    KerasRMSprop,
    KerasSGD,
)

KERAS_OPTIMIZER_CLASSES: dict[str, type[KerasOptimizer]] = {
    "Adam": KerasAdam,
    "AdamW": KerasAdamW,
    "SGD": KerasSGD,
    "RMSprop": KerasRMSprop,
}
# Keras config keys → constructor keywords, per class (betas are assembled from two keys).
_OPTION_NAMES: dict[str, dict[str, str]] = {
    "Adam": {"epsilon": "eps", "amsgrad": "amsgrad"},
    "AdamW": {"epsilon": "eps", "amsgrad": "amsgrad"},
    "SGD": {"momentum": "momentum", "nesterov": "nesterov"},
    "RMSprop": {"rho": "rho", "momentum": "momentum", "epsilon": "eps", "centered": "centered"},
}
_BASE_OPTIONS = ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
_SUPPORTED = ", ".join(KERAS_OPTIMIZER_CLASSES)


def optimizer_from_keras_config(config: Mapping[str, Any] | str, params: ParamsT) -> KerasOptimizer:
    """The torch optimizer that continues what a serialized Keras optimizer does.

    ``config`` is the optimizer entry of a ``.keras`` archive's ``compile_config``
    (``{"module": "keras.optimizers", "class_name": "Adam", "config": {...}}``) or a
    Keras optimizer string (``"adam"``). Supported: Adam, AdamW, SGD and RMSprop with a
    float learning rate and any of their options; learning-rate schedules, ``use_ema``,
    ``loss_scale_factor``, ``gradient_accumulation_steps``, other classes and options
    this function does not know are refused by name (``ValueError``).

    The config's ``learning_rate`` is ``float()`` of Keras's floatx variable, so it
    already carries floatx's rounding: no ``lr_dtype`` is needed. A config does not
    record ``exclude_from_weight_decay``: build param groups for that
    (``weight_decay_param_groups``) and pass them as ``params``.

    >>> w = torch.nn.Parameter(torch.zeros(3))
    >>> opt = optimizer_from_keras_config(
    ...     {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}}, [w])
    >>> type(opt).__name__, opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"]
    ('KerasSGD', 0.1, 0.9)
    """
    if isinstance(config, str):
        by_lower = {name.lower(): name for name in KERAS_OPTIMIZER_CLASSES}
        if config.lower() not in by_lower:
            raise ValueError(
                f"Keras optimizer {config!r} is not supported. Supported: {_SUPPORTED}"
            )
        class_name, options = by_lower[config.lower()], {}
    else:
        class_name = str(config.get("class_name"))
        module = config.get("module", "keras.optimizers")
        if module != "keras.optimizers" or class_name not in KERAS_OPTIMIZER_CLASSES:
            raise ValueError(
                f"Keras optimizer {module}.{class_name} is not supported. "
                f"Supported: keras.optimizers.{{{_SUPPORTED}}}"
            )
        options = dict(config.get("config") or {})
    where = f"Keras optimizer {class_name}"
    _refuse_unsupported(options, where)
    kwargs: dict[str, Any] = {}
    if "learning_rate" in options:
        kwargs["lr"] = _number(options.pop("learning_rate"), "learning_rate", where)
    if class_name in ("Adam", "AdamW") and ("beta_1" in options or "beta_2" in options):
        kwargs["betas"] = (
            _number(options.pop("beta_1", KERAS_ADAM_BETA_1), "beta_1", where),
            _number(options.pop("beta_2", KERAS_ADAM_BETA_2), "beta_2", where),
        )
    for key in (*_OPTION_NAMES[class_name], *_BASE_OPTIONS):
        if key in options:
            kwargs[_OPTION_NAMES[class_name].get(key, key)] = options.pop(key)
    if options:
        raise ValueError(
            f"{where}: option(s) {sorted(options)} are not supported. Received: {options}"
        )
    return KERAS_OPTIMIZER_CLASSES[class_name](params, **kwargs)


def _refuse_unsupported(options: dict[str, Any], where: str) -> None:
    """Drop what changes nothing (name, EMA settings with EMA off); refuse what would."""
    options.pop("name", None)
    lr = options.get("learning_rate")
    if isinstance(lr, Mapping) or callable(lr):
        kind = lr.get("class_name", "callable") if isinstance(lr, Mapping) else "callable"
        raise ValueError(
            f"{where}: learning_rate is a {kind} schedule; learning-rate schedules are not "
            "supported (a float learning_rate is; set param_group['lr'] between steps to "
            f"change it). Received: learning_rate={lr!r}"
        )
    if options.pop("use_ema", False):
        raise ValueError(
            f"{where}: use_ema=True is not supported (Keras's EMA of the weights); "
            "supported: use_ema=False. Received: use_ema=True"
        )
    options.pop("ema_momentum", None)
    options.pop("ema_overwrite_frequency", None)
    for key in ("loss_scale_factor", "gradient_accumulation_steps"):
        value = options.pop(key, None)
        if value is not None:
            raise ValueError(
                f"{where}: {key} is not supported (only None). Received: {key}={value!r}"
            )


def _number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key} must be a number. Received: {key}={value!r}")
    return float(value)


def _layout_and_groups(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.nn.Parameter], n_transforms: int
) -> tuple[SlotLayout, dict[str, Any]]:
    """Check that ``params`` lists the optimizer's parameters once each; its slot layout."""
    if not isinstance(optimizer, KerasOptimizer):
        raise ValueError(
            "Keras optimizer state needs one of torch_cnn.optim's Keras optimizers "
            f"({', '.join(c.__name__ for c in KERAS_OPTIMIZER_CLASSES.values())}). "
            f"Received: {type(optimizer).__module__}.{type(optimizer).__name__}"
        )
    if n_transforms != len(params):
        raise ValueError(
            f"one layout transform per parameter is needed: {len(params)} parameters, "
            f"{n_transforms} transforms"
        )
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    listed = [id(p) for p in params]
    unknown = [i for i, p in enumerate(params) if id(p) not in group_of]
    if unknown or len(set(listed)) != len(listed) or len(listed) != len(group_of):
        raise ValueError(
            "params_in_keras_order must list each of the optimizer's parameters exactly once: "
            f"the optimizer has {len(group_of)}, {len(listed)} were given "
            f"({len(set(listed))} distinct, positions {unknown} not in the optimizer)"
        )
    groups = [group_of[id(p)] for p in params]
    layouts = {optimizer.keras_slots(g) for g in groups}
    if len(layouts) > 1:
        raise ValueError(
            f"the param groups keep different slots {sorted(layouts)}; a Keras optimizer keeps one set"
        )
    lrs = {g["lr"] for g in groups}
    if len(lrs) > 1:
        raise ValueError(
            f"the param groups have different learning rates {sorted(lrs)}; Keras has one"
        )
    return layouts.pop() if layouts else (), groups[0] if groups else optimizer.defaults


def _describe(optimizer: KerasOptimizer, layout: SlotLayout, k: int) -> str:
    blocks = " then ".join("/".join(block) + " per variable" for block in layout)
    slots = f", then {blocks}" if blocks else ""
    count = 2 + k * sum(len(block) for block in layout)
    return f"a Keras {optimizer.keras_class_name} over {k} variables has {count}: iterations, learning_rate{slots}"


def load_keras_optimizer_state(
    optimizer: torch.optim.Optimizer,
    variables: Sequence[np.ndarray],
    params_in_keras_order: Sequence[torch.nn.Parameter],
    to_torch: Sequence[Callable[[np.ndarray], np.ndarray]],
) -> None:
    """Set ``iterations``, the learning rate and every slot from Keras's ``optimizer.variables``.

    ``variables`` as saved under ``optimizer/vars`` (see the module docstring);
    ``params_in_keras_order[j]`` is the torch parameter of Keras's ``j``-th trainable
    variable and ``to_torch[j]`` the layout transform from Keras to torch for it (e.g.
    ``torch_cnn.porting.conv_kernel_to_torch``); slots are shaped like their variable,
    so the same transform applies. Counts, dtypes and every transformed shape are
    checked before anything changes; on a ``ValueError`` the optimizer is as it was.
    Slots are converted to each parameter's dtype and device; every param group gets
    Keras's ``iterations`` and learning rate.
    """
    params = list(params_in_keras_order)
    layout, _ = _layout_and_groups(optimizer, params, len(to_torch))
    assert isinstance(optimizer, KerasOptimizer)  # checked above
    expected = 2 + len(params) * sum(len(block) for block in layout)
    if len(variables) != expected:
        raise ValueError(
            f"{len(variables)} Keras optimizer variables received; "
            f"{_describe(optimizer, layout, len(params))}"
        )
    iterations, lr = np.asarray(variables[0]), np.asarray(variables[1])
    if iterations.shape != () or iterations.dtype.kind not in "iu" or int(iterations) < 0:
        raise ValueError(
            f"variable 0 (iterations) must be a non-negative integer scalar. "
            f"Received: {iterations.dtype} of shape {iterations.shape}"
        )
    if lr.shape != () or lr.dtype.kind != "f":
        raise ValueError(
            f"variable 1 (learning_rate) must be a float scalar. Received: {lr.dtype} of shape {lr.shape}"
        )
    new_state: list[dict[str, torch.Tensor]] = [{} for _ in params]
    i = 2
    for block in layout:
        for j, p in enumerate(params):
            for key in block:
                value = np.asarray(variables[i])
                if value.dtype.kind != "f":
                    raise ValueError(
                        f"variable {i} ({key} of Keras variable {j}) is {value.dtype}, not float"
                    )
                moved = np.asarray(to_torch[j](value))
                if moved.shape != tuple(p.shape):
                    raise ValueError(
                        f"variable {i} ({key} of Keras variable {j}) has shape {value.shape}, which "
                        f"its transform makes {moved.shape}; torch parameter {j} has shape {tuple(p.shape)}"
                    )
                slot = torch.zeros_like(p, memory_format=torch.preserve_format)
                slot.copy_(torch.from_numpy(np.ascontiguousarray(moved)))
                new_state[j][key] = slot
                i += 1
    for p, slots in zip(params, new_state, strict=True):
        optimizer.state[p] = slots
    for group in optimizer.param_groups:
        group["step"] = int(iterations)
        group["lr"] = float(lr)


def keras_optimizer_state(
    optimizer: torch.optim.Optimizer,
    params_in_keras_order: Sequence[torch.nn.Parameter],
    to_keras: Sequence[Callable[[np.ndarray], np.ndarray]],
) -> list[np.ndarray]:
    """Keras's ``optimizer.variables`` for this optimizer's state (the inverse of the loader).

    ``iterations`` (int64), the learning rate (in ``lr_dtype``, or the first parameter's
    dtype), then the slots in Keras's order, each taken through ``to_keras[j]``; slots a
    parameter has not created yet (no step taken) are zeros, as Keras's start.
    """
    params = list(params_in_keras_order)
    layout, group = _layout_and_groups(optimizer, params, len(to_keras))
    assert isinstance(optimizer, KerasOptimizer)  # checked above
    lr_dtype = group["lr_dtype"] or (params[0].dtype if params else torch.float32)
    np_lr = NUMPY_DTYPES.get(lr_dtype, np.float32)
    out = [
        np.asarray(optimizer.iterations, dtype=np.int64),
        np.asarray(as_dtype(group["lr"], lr_dtype), dtype=np_lr),
    ]
    for block in layout:
        for j, p in enumerate(params):
            state = optimizer.state.get(p, {})
            for key in block:
                slot = state.get(key)
                value = (slot if slot is not None else torch.zeros_like(p)).detach().cpu().numpy()
                out.append(np.asarray(to_keras[j](value)))
    return out
