"""Converters: Keras's merge layers (keras/src/layers/merging/).

``Add``/``Subtract``/``Multiply``/``Average``/``Maximum``/``Minimum`` fold their
inputs left to right, broadcasting as Keras does (lower-rank inputs get size-1
axes after the batch axis); ``Concatenate`` joins along the torch dim of its Keras
axis (-1, the channels of a map, is torch dim 1). Inputs that come from a
torch-order ``Flatten`` are refused (the Flatten then keeps Keras's order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch_cnn.convert.builtin.core import broadcast_shape
from torch_cnn.convert.registry import (
    BuildContext,
    Converted,
    KerasCall,
    TensorArg,
    register_keras_layer,
)
from torch_cnn.layers.merge import Align, Concatenate, Merge
from torch_cnn.layers.spec import TensorSpec

__all__ = ["input_order", "merge_module"]


def input_order(call: KerasCall, n_inputs: int) -> list[int]:
    """Which input tensor each entry of a merge's list is (``call.args[0]``), in list order."""
    if not call.args:
        return list(range(n_inputs))
    first: Any = call.args[0]
    if not isinstance(first, list | tuple) or not all(isinstance(a, TensorArg) for a in first):
        raise call.error(f"a merge layer is called on a list of tensors; received {call.args!r}")
    order = [a.index for a in first]
    if not all(0 <= i < n_inputs for i in order):
        raise call.error(f"tensor arguments {order} do not match {n_inputs} inputs")
    return order


def _reorder(order: Sequence[int], n_inputs: int) -> list[int] | None:
    """``order`` where the module must pick its arguments; ``None`` where they come in order."""
    return None if list(order) == list(range(n_inputs)) else list(order)


def merge_module(
    call: KerasCall, mode: str, specs: Sequence[TensorSpec], order: Sequence[int]
) -> tuple[Merge, TensorSpec]:
    """A ``Merge`` of ``specs`` taken in ``order``, and the spec of its output."""
    picked = [specs[i] for i in order]
    if any(s.chw is not None for s in picked):
        raise call.error("inputs from a torch-order Flatten are not supported")
    out = TensorSpec(broadcast_shape(call, [s.shape for s in picked]))
    out_rank = len(out.shape)
    aligns: list[Align | None] = []
    for s in picked:
        expand = out_rank - len(s.shape)
        if expand == 0:
            aligns.append(None)
        else:
            aligns.append(Align(s.is_map, expand, out.is_map))
    return Merge(mode, aligns, order=_reorder(order, len(specs))), out


def _merge(mode: str, min_inputs: int = 1, exact: int | None = None) -> None:
    def build(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
        order = input_order(call, len(inputs))
        if exact is not None and len(order) != exact:
            raise call.error(f"expects exactly {exact} inputs; received {len(order)}")
        if len(order) < min_inputs:
            raise call.error(f"expects at least {min_inputs} input(s); received {len(order)}")
        module, out = merge_module(call, mode, inputs, order)
        return Converted(module, out)

    build.__doc__ = f"keras.layers.{mode.title()}: an elementwise {mode} of its inputs."
    register_keras_layer(mode.title())(build)


_merge("add")
_merge("subtract", exact=2)
_merge("multiply")
_merge("average")
_merge("maximum")
_merge("minimum")


@register_keras_layer("Concatenate")
def concatenate(call: KerasCall, inputs: Sequence[TensorSpec], ctx: BuildContext) -> Converted:
    """keras.layers.Concatenate along ``axis`` (default -1: the channels of a map)."""
    order = input_order(call, len(inputs))
    specs = [inputs[i] for i in order]
    if not specs:
        raise call.error("expects at least one input")
    if any(s.chw is not None for s in specs):
        raise call.error("inputs from a torch-order Flatten are not supported")
    ranks = {len(s.shape) for s in specs}
    if len(ranks) != 1:
        raise call.error(
            "inputs must have the same rank; received " + ", ".join(s.keras_str() for s in specs)
        )
    axis = call.config.get("axis", -1)
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise call.error(f"axis must be an int. Received: axis={axis!r}")
    first = specs[0]
    try:
        k = first.keras_axis(axis)
    except ValueError as exc:
        raise call.error(str(exc)) from None
    if k == 0:
        raise call.error("concatenation along the batch axis is not supported")
    shape: list[int | None] = list(first.shape)
    for s in specs[1:]:
        for d, (a, b) in enumerate(zip(shape, s.shape, strict=True)):
            if d == k - 1:
                shape[d] = None if a is None or b is None else a + b
            elif a is not None and b is not None and a != b:
                raise call.error(
                    "inputs must match except along the concatenation axis; received "
                    + ", ".join(x.keras_str() for x in specs)
                    + f" with axis={axis}"
                )
            elif a is None:
                shape[d] = b
    module = Concatenate(first.torch_axis(axis), order=_reorder(order, len(inputs)))
    return Converted(module, TensorSpec(tuple(shape)))
