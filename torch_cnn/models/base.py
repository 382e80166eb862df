"""What both seed models share: a Keras-style layer table that drives the forward pass.

Each seed model is a plain chain of Keras layers. ``KerasStyleNet`` keeps that
chain as a table of ``LayerInfo`` rows (torch module, the Keras class it
mirrors, the activation Keras fuses into it). The forward pass, the per-layer
outputs the parity suite compares, ``summary`` and weight porting all read the
same table, so they cannot disagree about the architecture.

The layout a model computes in is its own business (``memory_format``, see
``compute_format``): by default a float32 model whose convolutions are wide enough converts
a batch of NCHW images to channels_last inside ``forward`` and keeps it there through its
convolutions and pools, about 2x faster on the CPU than plain NCHW and within the same
parity bars (the parity suite runs on it). Inputs and outputs stay NCHW.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn.layers.padding import Conv2dSame

KERAS_CLASSES = ("Conv2D", "MaxPooling2D", "Flatten", "Dense")

# How a model lays out its image maps while it computes (see ``compute_format``).
MemoryFormat = Literal["auto", "channels_last", "contiguous"]
MEMORY_FORMATS: tuple[MemoryFormat, ...] = get_args(MemoryFormat)
# Where "auto" computes channels_last: the dtypes oneDNN and cuDNN run fast in that layout.
# float64 stays NCHW (no faster in channels_last on the CPU, and it is the dtype of the
# 1e-12 parity checks, which then see exactly the arithmetic they always saw).
_CHANNELS_LAST_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_CHANNELS_LAST_DEVICES = ("cpu", "cuda")
# ... and the batches and convolutions it pays for, measured on the CPU (torch 2.13, oneDNN;
# process CPU time, one thread; benchmarks/candidates.py for the whole models):
# - one image: torch runs its own (non-oneDNN) convolution either way, and channels_last
#   only adds copies: 1.2-1.3x slower for model_cifar10, 1.1x for resnet_bn;
# - from 2 images on, for convolutions of 16 channels and more (an AVX-512 register of
#   float32): model_cifar10 (32-128 channels) 0.92x the NCHW time at 2 images, 0.58x at
#   256, resnet_bn (16-64) 0.89x at 2, 0.67x at 256;
# - narrower convolutions lose at every batch: model_cnn (10 and 20 channels) 1.2-1.6x
#   slower from 8 images on, the zoo's residual_bn (4 and 8) 1.1-1.7x.
CHANNELS_LAST_MIN_BATCH = 2
CHANNELS_LAST_MIN_CHANNELS = 16
# A conv with at most this many input channels reads the image itself (RGB, RGBA, gray):
# it does not decide the layout.
IMAGE_CHANNELS_MAX = 4


def check_memory_format(value: str) -> MemoryFormat:
    """``value`` if it is one of ``MEMORY_FORMATS``, else a ``ValueError`` naming them."""
    if value not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}. Received: {value!r}")
    return value


def wide_convolutions(model: nn.Module) -> bool:
    """Whether ``model``'s convolutions are wide enough for channels_last to pay: it has a
    convolution past the one reading the image, and every such convolution has at least
    ``CHANNELS_LAST_MIN_CHANNELS`` input and output channels.

    >>> from torch import nn
    >>> wide_convolutions(nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 64, 3)))
    True
    >>> wide_convolutions(nn.Sequential(nn.Conv2d(3, 10, 4), nn.Conv2d(10, 20, 3)))
    False
    """
    convs = [
        m
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.in_channels > IMAGE_CHANNELS_MAX
    ]
    return bool(convs) and all(
        min(c.in_channels, c.out_channels) >= CHANNELS_LAST_MIN_CHANNELS for c in convs
    )


def compute_format(
    setting: MemoryFormat, x: torch.Tensor, wide: bool = True
) -> torch.memory_format:
    """The layout a model with ``memory_format=setting`` computes the images ``x`` in.

    ``"auto"`` (the default): channels_last where it was measured faster, else plain NCHW:
    for a float32 (or bf16/fp16) batch of at least ``CHANNELS_LAST_MIN_BATCH`` images on
    the CPU or CUDA, through convolutions that are ``wide`` (``wide_convolutions``), where
    oneDNN's and cuDNN's channels-last kernels are the fast ones and max-pooling keeps its
    indices cheaply. Not for float64, other devices, one image, or narrow convolutions.
    ``"channels_last"`` and ``"contiguous"`` force one layout.

    >>> compute_format("auto", torch.zeros(2, 3, 8, 8))
    torch.channels_last
    >>> compute_format("auto", torch.zeros(2, 3, 8, 8, dtype=torch.float64))
    torch.contiguous_format
    >>> compute_format("auto", torch.zeros(1, 3, 8, 8)), compute_format("channels_last", torch.zeros(1, 3, 8, 8))
    (torch.contiguous_format, torch.channels_last)
    """
    if x.dim() != 4 or setting == "contiguous":
        return torch.contiguous_format
    if setting == "channels_last":
        return torch.channels_last
    fast = (
        wide
        and x.shape[0] >= CHANNELS_LAST_MIN_BATCH
        and x.dtype in _CHANNELS_LAST_DTYPES
        and x.device.type in _CHANNELS_LAST_DEVICES
    )
    return torch.channels_last if fast else torch.contiguous_format


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return F.softmax(x, dim=-1)  # Keras's softmax: last axis


def _relu(x: torch.Tensor) -> torch.Tensor:
    # In place: x is the fresh output of the conv or dense layer it follows, which neither
    # their backward nor anything else holds. Bit for bit F.relu, without a new tensor
    # (on the CPU, a (256, 32, 30, 30) allocation costs more than the ReLU itself).
    return F.relu(x, inplace=True)


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor] | None] = {
    "linear": None,
    "relu": _relu,
    "softmax": _softmax,
}


@dataclass(frozen=True)
class LayerInfo:
    """One Keras layer: the torch module that computes it and the activation Keras fuses in."""

    module: str  # attribute name on the model, e.g. "conv1"
    keras_class: str  # "Conv2D", "MaxPooling2D", "Flatten" or "Dense"
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.keras_class not in KERAS_CLASSES:
            raise ValueError(
                f"keras_class must be one of {KERAS_CLASSES}. Received: {self.keras_class!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {tuple(ACTIVATIONS)}. Received: {self.activation!r}"
            )
        if self.activation != "linear" and self.keras_class not in ("Conv2D", "Dense"):
            # Keras's Flatten and MaxPooling2D take no activation; the forward pass relies on
            # it too (its ReLU works in place on the fresh output of a conv or dense layer).
            raise ValueError(
                f"{self.keras_class} {self.module!r} takes no activation, as in Keras. "
                f"Received: activation={self.activation!r}"
            )


def conv_padding(conv: nn.Conv2d) -> str:
    """The Keras ``padding`` a torch conv implements: 'same' or 'valid'."""
    if isinstance(conv, Conv2dSame) or conv.padding == "same":
        return "same"
    if conv.padding == (0, 0):
        return "valid"
    raise ValueError(f"{conv} pads {conv.padding}, which is neither Keras 'same' nor 'valid'")


class MemoryFormatMixin(nn.Module):
    """``memory_format`` and ``compute_format`` for a model of image maps (the seed models and
    converted ones): the layout its maps are computed in, whatever layout comes in."""

    _memory_format: MemoryFormat = "auto"

    @property
    def memory_format(self) -> MemoryFormat:
        """``"auto"``, ``"channels_last"`` or ``"contiguous"``: see ``compute_format``."""
        return self._memory_format

    @memory_format.setter
    def memory_format(self, value: MemoryFormat) -> None:
        self._memory_format = check_memory_format(value)

    def compute_format(self, x: torch.Tensor) -> torch.memory_format:
        """The layout this model computes the images ``x`` in (the module's ``compute_format``)."""
        if self._memory_format != "auto" or x.dim() != 4 or x.shape[0] < CHANNELS_LAST_MIN_BATCH:
            return compute_format(self._memory_format, x)
        return compute_format("auto", x, wide_convolutions(self))


class KerasStyleNet(MemoryFormatMixin):
    """Base of the seed models: input checks and a forward pass driven by ``layer_table``.

    ``model(x)`` returns what the Keras model returns (softmax probabilities for
    ``model_cnn``, logits for ``model_cifar10``); ``model.logits(x)`` always
    returns the pre-softmax values, for numerically stable losses.

    ``memory_format`` is the layout the images are computed in (``compute_format``):
    ``"auto"`` (channels_last where it is faster: float32 batches through wide
    convolutions, so ``model_cifar10`` but not ``model_cnn``), ``"channels_last"`` or
    ``"contiguous"`` (plain NCHW throughout). Inputs may come in either layout; outputs
    are the same in every setting, to the parity bars.
    """

    name: ClassVar[str]
    layer_table: ClassVar[tuple[LayerInfo, ...]]
    # The Keras API the model is written in: it decides which groups save_weights writes.
    keras_api: ClassVar[str] = "functional"
    input_shape: tuple[int, int, int]  # (C, H, W)

    def keras_layers(self) -> Iterator[tuple[LayerInfo, nn.Module]]:
        """``(LayerInfo, module)`` for each Keras layer, in model order."""
        for info in self.layer_table:
            yield info, self.get_submodule(info.module)

    @property
    def output_activation(self) -> str:
        return self.layer_table[-1].activation

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ``TypeError``/``ValueError`` that says what was received and what is expected."""
        c, h, w = self.input_shape
        expected = f"(N, {c}, {h}, {w})"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{self.name} expects a torch.Tensor {expected}; received {type(x)}")
        if not x.is_floating_point():
            raise TypeError(
                f"{self.name} expects floating-point images with values in [0, 1]; received "
                f"dtype {x.dtype}. Convert uint8 images with x.float() / 255."
            )
        param = next(self.parameters(), None)
        if param is not None and x.dtype != param.dtype:
            raise TypeError(
                f"{self.name} has {param.dtype} parameters; received an input of dtype {x.dtype}. "
                f"Use x.to({param.dtype}) or model.to({x.dtype})."
            )
        shape = tuple(x.shape)
        if x.dim() != 4:
            hint = " For one image use x.unsqueeze(0)." if shape == (c, h, w) else ""
            raise ValueError(
                f"{self.name} expects a batch of shape {expected} (NCHW); received shape "
                f"{shape} (rank {x.dim()}).{hint}"
            )
        if shape[1:] != (c, h, w):
            hint = ""
            if shape[1:] == (h, w, c):
                hint = (
                    " This looks like channels-last (NHWC) images as Keras takes them; "
                    "torch_cnn expects NCHW: x.permute(0, 3, 1, 2)."
                )
            raise ValueError(
                f"{self.name} expects a batch of shape {expected} (NCHW); received shape "
                f"{shape}.{hint}"
            )

    def _run(self, x: torch.Tensor, keep: bool, last_activation: bool) -> list[torch.Tensor]:
        self.check_input(x)
        x = x.contiguous(memory_format=self.compute_format(x))
        outputs = []
        last = len(self.layer_table) - 1
        for i, (info, module) in enumerate(self.keras_layers()):
            x = module(x)
            act = ACTIVATIONS[info.activation]
            if act is not None and (i < last or last_activation):
                x = act(x)
            if keep or i == last:
                outputs.append(x)
        return outputs

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The last layer's output before its activation, ``(N, num_classes)``."""
        return self._run(x, keep=False, last_activation=False)[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the Keras model returns for the same images, ``(N, num_classes)``."""
        return self._run(x, keep=False, last_activation=True)[-1]

    def layer_outputs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every Keras layer's output (after its activation), keyed by module name, in order.

        Convolution and pooling outputs are NCHW by shape (their strides are the layout the
        model computes in); compare them with Keras's NHWC outputs after
        ``.permute(0, 2, 3, 1)``.
        """
        outs = self._run(x, keep=True, last_activation=True)
        return {info.module: out for info, out in zip(self.layer_table, outs, strict=True)}

    @torch.no_grad()
    def output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each Keras layer's output shape for one image, torch layout (``(C, H, W)`` or ``(F,)``)."""
        p = next(self.parameters())
        x = torch.zeros(1, *self.input_shape, device=p.device, dtype=p.dtype)
        return {name: tuple(out.shape[1:]) for name, out in self.layer_outputs(x).items()}
