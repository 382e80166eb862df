"""Classify images: the top classes and their probabilities, for seed and converted models.

``predict(model, images)`` takes a batch of NCHW images (uint8, or floats in [0, 1]) and
returns one ``Prediction`` per image; ``read_images(path)`` reads PNG or JPEG files (with
Pillow) and NumPy ``.npy`` arrays as such a batch, checked against the model's input size
or resized as ``tf.image.resize`` does (bilinear, half-pixel centres, no antialiasing).

Probabilities: a model that ends in softmax returns them (Keras's ``predict`` gives the
same); one that returns logits gets ``softmax(logits)``; a single sigmoid unit gives the
two classes ``1 - p`` and ``p``; several sigmoid units are independent probabilities.

>>> import torch, torch_cnn
>>> from torch_cnn.predict import predict
>>> model = torch_cnn.create_model("model_cifar10").eval()
>>> [p] = predict(model, torch.zeros(1, 3, 32, 32, dtype=torch.uint8), top_k=2)
>>> len(p.top), p.top[0].name in CIFAR10_CLASSES
(2, True)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torch_cnn.data import to_float
from torch_cnn.models import KerasGraph, KerasStyleNet

# The names in CIFAR-10's batches.meta, in label order (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy",)
PIL_FORMATS = ("PNG", "JPEG")  # the decoders Pillow may use, whatever a file's name says
# Pixels an image may declare before it is decoded (a decompression bomb is refused from its
# header): 8192 × 8192, far above what a 32 × 32 classifier needs, even resized from a photo.
MAX_IMAGE_PIXELS = 1 << 26
MAX_ARRAY_BYTES = 1 << 30  # an .npy of uint8 images: 1 GiB (about 350,000 CIFAR images)
DEFAULT_TOP_K = 5


class PredictError(ValueError):
    """A model or images that ``predict`` cannot take; the message says what and why."""


class ImageError(PredictError):
    """An image file that cannot be read, or does not fit the model; the message names it."""


@dataclass(frozen=True)
class ClassScore:
    index: int  # the model's output unit (the CIFAR-10 label for a CIFAR-10 model)
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image, most probable first; ``source`` names the image."""

    source: str
    top: tuple[ClassScore, ...]

    @property
    def label(self) -> str:
        return self.top[0].name

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "top": [asdict(s) for s in self.top]}


# ---------------------------------------------------------------------------------------------
# The model's side


def input_size(model: nn.Module) -> tuple[int | None, int | None]:
    """``(height, width)`` of the RGB images ``model`` takes (``None``: any); a
    ``PredictError`` when its input is not a three-channel image."""
    if isinstance(model, KerasStyleNet):
        shape: tuple[int | None, ...] = tuple(model.input_shape)
    elif isinstance(model, KerasGraph):
        shape = tuple(model.input_spec.torch_shape)
    else:
        raise TypeError(f"expected a torch_cnn model; received {type(model).__name__}")
    if len(shape) != 3 or shape[0] != 3:
        dims = ", ".join("?" if d is None else str(d) for d in shape)
        raise PredictError(
            f"model {getattr(model, 'name', '?')!r} takes inputs (N, {dims}); predict "
            "classifies RGB images, (N, 3, height, width)"
        )
    return shape[1], shape[2]


def class_names(k: int, classes: Sequence[str] | None = None) -> list[str]:
    """Names for ``k`` output units: ``classes`` (default ``CIFAR10_CLASSES``) when it has
    exactly ``k``, else ``class_0``, ``class_1``, ..."""
    names = list(CIFAR10_CLASSES if classes is None else classes)
    return names if len(names) == k else [f"class_{i}" for i in range(k)]


def _output_activation(model: nn.Module) -> str:
    return str(getattr(model, "output_activation", "linear"))


def probabilities(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` class probabilities of NCHW float images ``x`` (see the module docstring)."""
    with torch.no_grad():
        out: torch.Tensor = model(x)
    if out.dim() != 2:
        raise PredictError(
            f"model {getattr(model, 'name', '?')!r} returns outputs of shape "
            f"{tuple(out.shape)}; predict classifies: it needs a (N, classes) output"
        )
    act = _output_activation(model)
    if act == "softmax":
        return out
    if act == "sigmoid":
        return torch.cat([1 - out, out], dim=1) if out.shape[1] == 1 else out
    return torch.softmax(out, dim=1)  # logits (or any other head): softmax of the outputs


def predict(
    model: nn.Module,
    images: torch.Tensor,
    *,
    top_k: int = DEFAULT_TOP_K,
    classes: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
    batch_size: int = 256,
) -> list[Prediction]:
    """The ``top_k`` classes of each image in ``images``, most probable first.

    ``images``: ``(N, 3, H, W)`` uint8 (divided by 255, as the seeds' recipe) or floats in
    [0, 1], of the model's input size. ``classes``: names for the output units
    (``class_names``); ``sources``: a name per image (default ``"0"``, ``"1"``, ...);
    ``top_k`` larger than the classes gives them all. As Keras's ``predict``, the model
    runs in inference mode (BatchNormalization's moving statistics, no dropout) whatever
    mode it is in, say after ``fit``, and is left in the modes it was in, module by module,
    with its statistics untouched.
    """
    if top_k < 1:
        raise ValueError(f"top_k must be ≥ 1; received top_k={top_k}")
    if images.dim() != 4:
        raise ValueError(f"expected images (N, 3, H, W); received shape {tuple(images.shape)}")
    if sources is not None and len(sources) != len(images):
        raise ValueError(f"{len(sources)} sources for {len(images)} images")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    probs = []
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for start in range(0, len(images), batch_size):
            xb = images[start : start + batch_size]
            xb = to_float(xb, dtype) if xb.dtype == torch.uint8 else xb.to(dtype)
            probs.append(probabilities(model, xb.to(device)).float().cpu())
    finally:
        for m, training in modes.items():
            m.training = training
    if not probs:
        return []
    p = torch.cat(probs)
    names = class_names(p.shape[1], classes)
    values, indices = p.topk(min(top_k, p.shape[1]), dim=1)
    return [
        Prediction(
            str(i) if sources is None else sources[i],
            tuple(
                ClassScore(int(k), names[int(k)], float(v))
                for v, k in zip(values[i], indices[i], strict=True)
            ),
        )
        for i in range(len(p))
    ]


# ---------------------------------------------------------------------------------------------
# Image files


def _read_picture(path: Path) -> np.ndarray:
    """A PNG or JPEG file as an ``(H, W, 3)`` uint8 array; its size checked before decoding."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PIL_FORMATS) as im:  # reads the header only
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageError(
                        f"{path}: {w}×{h} pixels, over the limit of {MAX_IMAGE_PIXELS:,}"
                    )
                rgb = _as_rgb(path, im)
                return np.array(rgb, dtype=np.uint8)  # a writable copy
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{path}: refused, too many pixels ({exc})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable PNG or JPEG image ({exc})") from None


def _as_rgb(path: Path, im: Any) -> Any:
    """RGB as it is; grayscale and palette images (no information lost) as RGB; an alpha
    channel only where it is fully opaque; anything else refused naming its mode."""
    if im.mode == "RGB":
        return im
    if im.mode in ("L", "P") and "transparency" not in im.info:
        return im.convert("RGB")
    if im.mode in ("RGBA", "LA", "P"):
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] == 255:
            return rgba.convert("RGB")
        raise ImageError(
            f"{path}: has transparent pixels (mode {im.mode}); flatten it onto a background first"
        )
    raise ImageError(f"{path}: mode {im.mode}; expected an 8-bit RGB, grayscale or palette image")


def _read_array(path: Path) -> np.ndarray:
    """An ``.npy`` of uint8 images, ``(H, W, 3)`` or ``(N, H, W, 3)`` (Keras's layout)."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:  # the header only: shape and dtype before any data
            version = fmt.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version}; expected 1.0 or 2.0")
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable .npy file ({exc})") from None
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > MAX_ARRAY_BYTES:
        raise ImageError(
            f"{path}: declares {nbytes:,} bytes, over the limit of {MAX_ARRAY_BYTES:,}"
        )
    if dtype != np.uint8 or len(shape) not in (3, 4) or shape[-1] != 3:
        raise ImageError(
            f"{path}: holds a {dtype} array of shape {tuple(shape)}; expected uint8 RGB images, "
            "(height, width, 3) or (N, height, width, 3)"
        )
    try:
        a: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable .npy file ({exc})") from None
    return a


def read_images(
    path: str | os.PathLike[str],
    size: tuple[int | None, int | None] = (32, 32),
    *,
    resize: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """``(images, sources)``: the RGB images of one file as an ``(N, 3, H, W)`` float32 batch
    in [0, 1], and a name for each (``path``, or ``path[i]`` for an array of several).

    PNG and JPEG files hold one image, ``.npy`` files one ``(H, W, 3)`` or several
    ``(N, H, W, 3)`` uint8 images. Images of another ``size`` (``None``: any) are an
    ``ImageError`` naming the file and both sizes, unless ``resize``: then they are resized
    as ``tf.image.resize`` does by default (bilinear, half-pixel centres, no antialiasing).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        arrays, sources = _read_picture(p)[None], [str(p)]
    elif suffix in ARRAY_SUFFIXES:
        arrays = _read_array(p)
        sources = [str(p)] if arrays.ndim == 3 else [f"{p}[{i}]" for i in range(len(arrays))]
        arrays = arrays[None] if arrays.ndim == 3 else arrays
    else:
        raise ImageError(
            f"{p}: expected a PNG or JPEG image or a NumPy .npy array (a name ending in "
            f"{', '.join(IMAGE_SUFFIXES + ARRAY_SUFFIXES)})"
        )
    arrays = np.require(arrays, requirements=["C", "W"])  # torch takes writable arrays
    x = to_float(torch.from_numpy(arrays).permute(0, 3, 1, 2))
    h, w = x.shape[2:]
    want = (size[0] or h, size[1] or w)
    if (h, w) != want:
        if not resize:
            raise ImageError(
                f"{p}: images of {w}×{h} pixels (width × height); the model takes "
                f"{want[1]}×{want[0]}: resize them first, or pass resize=True (torch-cnn predict "
                "--resize): bilinear, as tf.image.resize"
            )
        x = F.interpolate(x, size=want, mode="bilinear", align_corners=False, antialias=False)
    return x.contiguous(), sources
