"""Batches and augmentation on the device: seeded permutations, crops and flips as tensor ops.

>>> import torch
>>> from torch_cnn import data
>>> x = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
>>> y = torch.arange(10)
>>> g = torch.Generator().manual_seed(0)
>>> [len(yb) for _, yb in data.iterate_batches(x, y, 4, generator=g)]
[4, 4, 2]
>>> data.to_float(torch.tensor([0, 255], dtype=torch.uint8))
tensor([0., 1.])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from torch_cnn.data.files import PIXEL_SCALE


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images to ``dtype`` in [0, 1]: ``images / 255``, as Keras's ``astype("float32") / 255.0``.

    Divides (not multiplies by 1/255) so float32 results match NumPy's bit for bit.

    >>> to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
    tensor([0.0000, 0.2000, 1.0000])
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 images; received {images.dtype}")
    return images.to(dtype) / PIXEL_SCALE


def num_batches(n: int, batch_size: int, *, drop_last: bool = False) -> int:
    """Batches per epoch: ``ceil(n / batch_size)`` as Keras ``fit`` (``floor`` with ``drop_last``).

    >>> num_batches(10, 4), num_batches(10, 4, drop_last=True)
    (3, 2)
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; received batch_size={batch_size}")
    if n < 0:
        raise ValueError(f"n must be non-negative; received n={n}")
    return n // batch_size if drop_last else -(-n // batch_size)


def _cpu_generator(generator: torch.Generator | None) -> None:
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"pass a CPU torch.Generator (random numbers are drawn on the CPU so CPU and CUDA "
            f"runs agree); received one on {generator.device}"
        )


def shift_crop(images: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and crop it back to size at per-image ``offsets``.

    ``offsets`` is ``(N, 2)`` integer ``(dy, dx)`` in ``0..2*padding``; ``(padding, padding)``
    returns the image unchanged. One gather for the whole batch, no per-image loop.

    >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
    >>> shift_crop(x, torch.tensor([[0, 0]]), 1)
    tensor([[[[0., 0.],
              [0., 0.]]]])
    >>> shift_crop(x, torch.tensor([[2, 2]]), 1)
    tensor([[[[3., 0.],
              [0., 0.]]]])
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))  # (N, C, H+2p, W+2p)
    offsets = offsets.to(images.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=images.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=images.device)  # (N, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


@dataclass(frozen=True)
class Augment:
    """Random crop with zero padding and random horizontal flip, on whole batches.

    The random numbers come from a CPU ``torch.Generator`` (then move to the images' device),
    so a seed gives the same augmentation on CPU and CUDA. Works on uint8 or float images.

    >>> aug = Augment(padding=4, flip=True)
    >>> x = torch.rand(8, 3, 32, 32)
    >>> aug(x, torch.Generator().manual_seed(0)).shape
    torch.Size([8, 3, 32, 32])
    """

    padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be non-negative; received padding={self.padding}")

    def __call__(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        _cpu_generator(generator)
        n = images.shape[0]
        out = images
        # Draw both in a fixed order, whatever is enabled, so one seed means one stream.
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        flips = torch.rand(n, generator=generator) < 0.5
        if self.padding:
            out = shift_crop(out, offsets, self.padding)
        if self.flip:
            mask = flips.to(images.device)[:, None, None, None]
            out = torch.where(mask, out.flip(-1), out)
        return out


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = True,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    augment: Augment | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(xb, yb)`` batches from tensors already on their device.

    The permutation is drawn with ``generator`` on the CPU and then moved to ``x.device``, so
    CPU and CUDA see the same order; ``augment`` (if any) draws from the same generator. The
    last partial batch is kept, as Keras ``fit`` does, unless ``drop_last``.

    >>> x, y = torch.arange(10).reshape(10, 1), torch.arange(10)
    >>> [yb.tolist() for _, yb in iterate_batches(x, y, 4, shuffle=False)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} images, {len(y)} labels")
    n = len(x)
    count = num_batches(n, batch_size, drop_last=drop_last)
    _cpu_generator(generator)
    order = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    for i in range(count):
        start, stop = i * batch_size, min((i + 1) * batch_size, n)
        if order is None:
            xb, yb = x[start:stop], y[start:stop]
        else:
            idx = order[start:stop]
            xb, yb = x[idx], y[idx.to(y.device)]
        if augment is not None:
            xb = augment(xb, generator)
        yield xb, yb
