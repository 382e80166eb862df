"""Keras ⇄ PyTorch weight porting for the seed models, as pure functions over a record.

The layers of a Keras model (live, or read from a file) become a
``KerasModelRecord``: an ordered list of ``KerasLayer`` (class, config, weights
in Keras order). ``keras_to_torch`` checks that record against a torch model's
layer table by kind and order, never by name, and returns a new state dict;
``torch_to_keras`` is its inverse. Nothing touches a model until every layer,
config entry and shape has been checked (nanoGPT's ``from_pretrained`` recipe).

Layout transforms (Keras → torch):
- Conv2D kernel ``(kh, kw, in, out)`` → weight ``(out, in, kh, kw)``
- Dense kernel ``(in, out)`` → weight ``(out, in)``; the first Dense after a
  Flatten also has its rows permuted from Keras's (H, W, C) flatten order to
  torch's (C, H, W).
- biases are copied as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from torch_cnn.models.base import KerasStyleNet, LayerInfo, conv_padding
from torch_cnn.porting.records import KerasLayer, KerasModelRecord, PortingError


def _describe(module: nn.Module) -> str:
    if isinstance(module, nn.Linear):
        return f"Linear {module.in_features}→{module.out_features}"
    if isinstance(module, nn.Conv2d):
        k = "×".join(map(str, module.kernel_size))
        return f"{type(module).__name__} {module.in_channels}→{module.out_channels}, {k}"
    return type(module).__name__


def _pair(v: Any) -> tuple[int, ...]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(i) for i in v)


def _expected_config(info: LayerInfo, module: nn.Module) -> dict[str, Any]:
    """The Keras config entries the torch module implies (compared where the source has them)."""
    if info.keras_class == "Conv2D":
        assert isinstance(module, nn.Conv2d)
        return {
            "filters": module.out_channels,
            "kernel_size": tuple(module.kernel_size),
            "strides": tuple(module.stride),
            "padding": conv_padding(module),
            "dilation_rate": tuple(module.dilation),
            "groups": module.groups,
            "activation": info.activation,
            "use_bias": module.bias is not None,
            "data_format": "channels_last",
        }
    if info.keras_class == "MaxPooling2D":
        assert isinstance(module, nn.MaxPool2d)
        return {
            "pool_size": _pair(module.kernel_size),
            "strides": _pair(module.stride),
            "padding": "valid",
            "data_format": "channels_last",
        }
    if info.keras_class == "Dense":
        assert isinstance(module, nn.Linear)
        return {
            "units": module.out_features,
            "activation": info.activation,
            "use_bias": module.bias is not None,
        }
    return {"data_format": "channels_last"}  # Flatten


def _normalise(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_normalise(v) for v in value)
    return value


# What Keras assumes where a config omits a key (the layers' __init__ defaults; Keras 3).
# ``None`` for data_format means image_data_format(), channels_last; for activation, linear;
# for MaxPooling2D's strides, the pool size. Keys without a default must be present.
KERAS_DEFAULTS: dict[str, dict[str, Any]] = {
    "Conv2D": {
        "strides": (1, 1), "padding": "valid", "dilation_rate": (1, 1), "groups": 1,
        "activation": "linear", "use_bias": True, "data_format": "channels_last",
    },
    "MaxPooling2D": {"pool_size": (2, 2), "padding": "valid", "data_format": "channels_last"},
    "Dense": {"activation": "linear", "use_bias": True},
    "Flatten": {"data_format": "channels_last"},
}  # fmt: skip
REQUIRED_KEYS = {"Conv2D": ("filters", "kernel_size"), "Dense": ("units",)}


def _config_value(layer: KerasLayer, key: str) -> Any:
    """The config's value for ``key`` as Keras reads it: its default where absent or None."""
    value = layer.config.get(key)
    if value is None and key == "strides" and layer.class_name == "MaxPooling2D":
        value = layer.config.get("pool_size", KERAS_DEFAULTS["MaxPooling2D"]["pool_size"])
    if value is None:
        value = KERAS_DEFAULTS.get(layer.class_name, {}).get(key)
    value = _normalise(value)
    if key in ("kernel_size", "strides", "pool_size", "dilation_rate") and isinstance(value, int):
        value = (value, value)
    return value


def _check_config(where: str, layer: KerasLayer, info: LayerInfo, module: nn.Module) -> None:
    """Every config entry the torch module implies, against the layer's config (Keras's default
    where the config omits it). A record without any config (a weights-only file) is not
    compared: its layers' kinds and shapes are."""
    if not layer.config:
        return
    for key in REQUIRED_KEYS.get(layer.class_name, ()):
        if layer.config.get(key) is None:
            raise PortingError(
                f"{where}: Keras layer {layer.name!r} ({layer.class_name}) has no {key!r} in its "
                "config, which Keras requires"
            )
    for key, want in _expected_config(info, module).items():
        got = _config_value(layer, key)
        if got != want:
            raise PortingError(
                f"{where}: Keras layer {layer.name!r} ({layer.class_name}) has {key}={got!r}; "
                f"torch module {info.module!r} ({_describe(module)}) implements {key}={want!r}"
            )


def _align(
    record: KerasModelRecord, model: nn.Module
) -> list[tuple[KerasLayer, LayerInfo, nn.Module]]:
    """Pair Keras layers with torch modules by kind and order; check count, kinds and configs."""
    if not isinstance(model, KerasStyleNet):
        raise TypeError(
            f"weight porting needs a torch_cnn model (KerasStyleNet); received {type(model).__name__}"
        )
    where = record.source
    c, h, w = model.input_shape
    if record.input_shape is not None and tuple(record.input_shape) != (h, w, c):
        raise PortingError(
            f"{where}: the Keras model takes inputs of shape {tuple(record.input_shape)}; "
            f"torch model {model.name!r} takes {(h, w, c)} (H, W, C)"
        )
    pairs = list(model.keras_layers())
    got = [f"{layer.name} ({layer.class_name})" for layer in record.layers]
    want = [f"{info.module} ({info.keras_class})" for info, _ in pairs]
    # Kinds and count first (the clearest message for a wrong architecture), then configs.
    for i, (layer, (info, module)) in enumerate(zip(record.layers, pairs, strict=False)):
        if layer.class_name != info.keras_class:
            raise PortingError(
                f"{where}: layer {i} is Keras layer {layer.name!r} ({layer.class_name}); torch "
                f"module {info.module!r} ({_describe(module)}) of {model.name!r} expects a "
                f"{info.keras_class} there. Keras layers: {got}; torch expects: {want}"
            )
    if len(record.layers) != len(pairs):
        raise PortingError(
            f"{where}: the Keras model has {len(record.layers)} layers; torch model "
            f"{model.name!r} has {len(pairs)}. Keras layers: {got}; torch expects: {want}"
        )
    for layer, (info, module) in zip(record.layers, pairs, strict=True):
        _check_config(where, layer, info, module)
    return [
        (layer, info, module) for layer, (info, module) in zip(record.layers, pairs, strict=True)
    ]


def _flatten_chw(model: KerasStyleNet) -> dict[str, tuple[int, int, int]]:
    """For each Dense that follows a Flatten: the (C, H, W) shape that was flattened."""
    shapes = model.output_shapes()
    result: dict[str, tuple[int, int, int]] = {}
    prev: tuple[int, ...] = model.input_shape
    pending: tuple[int, ...] | None = None
    for info in model.layer_table:
        if info.keras_class == "Flatten":
            pending = prev
        elif info.keras_class == "Dense" and pending is not None:
            if len(pending) == 3:
                result[info.module] = (pending[0], pending[1], pending[2])
            pending = None
        prev = shapes[info.module]
    return result


_CHW = tuple[int, int, int] | None  # the (C, H, W) a Dense's input was flattened from


def conv_kernel_to_torch(k: np.ndarray, chw: _CHW = None) -> np.ndarray:
    """Conv2D kernel ``(kh, kw, in, out)`` → torch weight ``(out, in, kh, kw)``."""
    return k.transpose(3, 2, 0, 1)


def conv_weight_to_keras(w: np.ndarray, chw: _CHW = None) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)


def dense_kernel_to_torch(k: np.ndarray, chw: _CHW = None) -> np.ndarray:
    """Dense kernel ``(in, out)`` → ``(out, in)``; after a Flatten, rows (h, w, c) → (c, h, w)."""
    if chw is not None:
        c, h, w = chw
        k = k.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
    return k.T


def dense_weight_to_keras(wt: np.ndarray, chw: _CHW = None) -> np.ndarray:
    k = wt.T
    if chw is not None:  # rows (c, h, w) → (h, w, c)
        c, h, w = chw
        k = k.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(h * w * c, -1)
    return k


# The per-layer-type transforms of a kernel (biases are copied as they are).
KERNEL_TO_TORCH = {"Conv2D": conv_kernel_to_torch, "Dense": dense_kernel_to_torch}
KERNEL_TO_KERAS = {"Conv2D": conv_weight_to_keras, "Dense": dense_weight_to_keras}


def _param_names(info: LayerInfo, module: nn.Module) -> list[str]:
    names = [f"{info.module}.{n}" for n, _ in module.named_parameters(recurse=False)]
    return sorted(names, key=lambda n: 0 if n.endswith(".weight") else 1)  # Keras: kernel, bias


def keras_to_torch(record: KerasModelRecord, model: nn.Module) -> dict[str, torch.Tensor]:
    """A new state dict for ``model`` made from Keras weights; reads ``model``, never changes it.

    Every layer is checked (kind, order, config, weight count, dtype and shape)
    before anything is converted; a mismatch raises ``PortingError`` naming the
    Keras layer, the torch module and both shapes. Tensors come back on the CPU
    in the source's dtype (``load_state_dict`` casts and moves them).
    """
    aligned = _align(record, model)
    assert isinstance(model, KerasStyleNet)
    where = record.source
    chw = _flatten_chw(model)
    params = dict(model.named_parameters())
    state: dict[str, torch.Tensor] = {}
    for layer, info, module in aligned:
        names = _param_names(info, module)
        if len(layer.weights) != len(names):
            raise PortingError(
                f"{where}: Keras layer {layer.name!r} ({layer.class_name}) has "
                f"{len(layer.weights)} weight arrays; torch module {info.module!r} "
                f"({_describe(module)}) has {len(names)} ({', '.join(names) or 'none'})"
            )
        for role, arr, pname in zip(("kernel", "bias"), layer.weights, names, strict=False):
            arr = np.asarray(arr)
            if arr.dtype.kind != "f":
                raise PortingError(
                    f"{where}: Keras layer {layer.name!r} ({layer.class_name}) {role} has dtype "
                    f"{arr.dtype}; expected a floating-point dtype (float16/32/64)"
                )
            target = tuple(params[pname].shape)
            keras_shape = _keras_shape(target, info, role)
            if arr.shape != keras_shape:
                raise PortingError(
                    f"{where}: Keras layer {layer.name!r} ({layer.class_name}) {role} "
                    f"{arr.shape} does not fit torch module {info.module!r} "
                    f"({_describe(module)}): expected {role} {keras_shape}, torch {pname} {target}"
                )
            if role == "kernel":
                arr = KERNEL_TO_TORCH[info.keras_class](arr, chw.get(info.module))
            state[pname] = torch.from_numpy(np.ascontiguousarray(arr))
    return state


def _keras_shape(torch_shape: tuple[int, ...], info: LayerInfo, role: str) -> tuple[int, ...]:
    if role == "bias":
        return torch_shape
    if info.keras_class == "Conv2D":
        o, i, kh, kw = torch_shape
        return (kh, kw, i, o)
    o, i = torch_shape
    return (i, o)


def torch_to_keras(model: nn.Module) -> list[list[np.ndarray]]:
    """The model's weights in Keras layout: one list per Keras layer, ``[kernel, bias]`` or ``[]``."""
    if not isinstance(model, KerasStyleNet):
        raise TypeError(
            f"weight porting needs a torch_cnn model (KerasStyleNet); received {type(model).__name__}"
        )
    chw = _flatten_chw(model)
    out: list[list[np.ndarray]] = []
    for info, module in model.keras_layers():
        arrays = []
        for pname in _param_names(info, module):
            t = model.get_parameter(pname).detach().cpu().numpy()
            if pname.endswith(".weight"):
                t = KERNEL_TO_KERAS[info.keras_class](t, chw.get(info.module))
            arrays.append(np.array(t, copy=True, order="C"))
        out.append(arrays)
    return out
