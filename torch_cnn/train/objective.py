"""What ``fit`` minimises and ``evaluate`` reports, chosen from the model's last activation, and
the checks on images and labels that keep a wrong input from training silently.

A Keras classifier ends in softmax (compiled with categorical cross-entropy), in a linear
layer (``SparseCategoricalCrossentropy(from_logits=True)``) or, for two classes, in one
sigmoid unit (binary cross-entropy). torch_cnn always computes the loss from the logits
(``model.logits``), which is what Keras does for softmax and sigmoid outputs too (it
reads the logits its own softmax/sigmoid recorded), so a saturated output never hits
the 1e-7 probability clip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from torch_cnn import data
from torch_cnn.models import KerasGraph, KerasStyleNet, TorchCnnModel

Data = Any  # data.Split | (images, labels) tensors or arrays | torch.utils.data.TensorDataset


@dataclass(frozen=True)
class Objective:
    """The loss of a classifier: ``categorical`` (integer labels 0..C-1) or ``binary`` (0/1)."""

    kind: Literal["categorical", "binary"]
    num_classes: int  # classes the labels may name (2 for a one-unit sigmoid)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if self.kind == "binary":
            return F.binary_cross_entropy_with_logits(
                logits.reshape(-1), y.to(logits.dtype), reduction=reduction
            )
        return F.cross_entropy(logits, y, reduction=reduction)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        """Class indices (``logits > 0`` for a one-unit sigmoid)."""
        if self.kind == "binary":
            return (logits.reshape(-1) > 0).long()
        return logits.argmax(dim=1)

    def describe(self) -> str:
        if self.kind == "binary":
            return "binary_crossentropy(logits of the sigmoid unit)"
        return "cross_entropy(logits)"


def objective_for(model: TorchCnnModel) -> Objective:
    """The loss a Keras user compiles this model with, from its output and last activation."""
    act = model.output_activation
    if isinstance(model, KerasStyleNet):
        units: tuple[int | None, ...] = model.output_shapes()[model.layer_table[-1].module]
    elif isinstance(model, KerasGraph):
        units = model.output_spec.shape
    else:
        raise TypeError(f"fit/evaluate need a torch_cnn model; received {type(model).__name__}")
    if len(units) == 1 and units[0] is not None:
        if act in ("softmax", "linear") and units[0] >= 2:
            return Objective("categorical", units[0])
        if act == "sigmoid" and units[0] == 1:
            return Objective("binary", 2)
    raise TypeError(
        f"fit and evaluate train classifiers: a model ending in softmax or a linear layer with "
        f"one output per class, or in one sigmoid unit; {model.name!r} returns "
        f"(None, {', '.join(map(str, units))}) after {act!r}"
    )


def _tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(
        f"{what} must be a torch.Tensor or a NumPy array; received {type(value).__name__}"
    )


def split_tensors(split: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` of a ``data.Split``, a pair, or a ``TensorDataset``."""
    if isinstance(split, data.Split):
        return split.images, split.labels
    tensors = getattr(split, "tensors", None)  # torch.utils.data.TensorDataset
    if isinstance(tensors, tuple) and len(tensors) == 2:
        return tensors[0], tensors[1]
    if isinstance(split, tuple | list) and len(split) == 2:
        return _tensor(split[0], "images"), _tensor(split[1], "labels")
    raise TypeError(
        "expected a data.Split, an (images, labels) pair of tensors or arrays, or a "
        f"TensorDataset of two tensors; received {type(split).__name__}"
    )


def as_tensors(
    split: Data,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
    objective: Objective | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` on ``device``, checked: float images of ``dtype`` (uint8 ones divided by 255,
    as Keras's ``astype("float32") / 255``), labels as the objective needs them.

    Refused with the index and value named: images of another integer or bool dtype (dividing
    them by 255, or not, would silently change what is learned), labels that are not integers
    (floats would be truncated), or outside ``0..C-1`` (``-100`` included, which
    ``F.cross_entropy`` would silently skip). uint8 images travel to the device as uint8.
    """
    x, y = split_tensors(split)
    if len(x) != len(y):
        raise ValueError(f"images and labels differ in length: {len(x)} images, {len(y)} labels")
    if len(x) == 0:
        raise ValueError("no images: the split is empty")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(
            f"images must be uint8 (they are divided by 255) or floating point; received "
            f"{x.dtype}. Convert them as the Keras model expects, e.g. x.float() / 255"
        )
    y = check_labels(y, objective or Objective("categorical", 2**62))
    x = x.to(device)
    x = data.to_float(x, dtype) if x.dtype == torch.uint8 else x.to(dtype)
    return x, y.to(device)


def check_labels(y: torch.Tensor, objective: Objective) -> torch.Tensor:
    """Labels as int64 class indices (binary: 0/1), or an error naming the first bad one."""
    if y.dim() == 2 and y.shape[1] == 1 and objective.kind == "binary":
        y = y.reshape(-1)
    if y.dim() != 1:
        raise ValueError(
            f"labels must be one class index per image, shape (N,); received {tuple(y.shape)}"
        )
    if y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"labels must be integers; received {y.dtype}")
    if y.is_floating_point():
        whole = torch.isfinite(y) & (y == y.round())
        if objective.kind != "binary" or not bool(whole.all()):
            raise TypeError(
                f"labels must be integer class indices; received {y.dtype}"
                + ("" if objective.kind != "binary" else " with values other than 0 and 1")
            )
    bad = torch.nonzero((y < 0) | (y >= objective.num_classes)).flatten()
    if len(bad):
        i = int(bad[0])
        value = y[i].item()
        raise ValueError(
            f"labels must lie in 0..{objective.num_classes - 1}; received {value} at index {i} "
            f"({len(bad)} out of range)"
            + (" (-100 is not 'ignore' here: every image counts)" if value == -100 else "")
        )
    return y.to(torch.int64)


def finite(value: float) -> bool:
    return math.isfinite(value)
