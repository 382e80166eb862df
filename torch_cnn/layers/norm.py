"""Keras's ``BatchNormalization`` and ``Normalization`` layers, computed as Keras computes them.

``BatchNorm2d``/``BatchNorm1d`` are torch's classes (state dict, ``fuse_conv_bn_eval``,
``SyncBatchNorm.convert_sync_batchnorm`` see what they expect) with Keras's
arithmetic (keras/src/layers/normalization/batch_normalization.py):

* ``eps`` defaults to 1e-3 (torch: 1e-5); ``keras_momentum`` to 0.99 and the moving
  statistics follow ``moving * momentum + batch * (1 - momentum)`` (torch's
  ``momentum`` attribute holds ``1 - keras_momentum``, its own convention);
* the moving variance is updated with the *biased* batch variance (``tf.nn.moments``;
  torch uses the unbiased one);
* the output is ``x * inv + (beta - mean * inv)`` with ``inv = rsqrt(var + eps) * gamma``
  (``tf.nn.batch_normalization``), the formula torch's inference kernel uses too;
* ``trainable=False`` (a frozen Keras layer) normalizes with the moving statistics
  even in training mode and leaves them alone (Keras 3 semantics);
* ``center``/``scale`` off: no ``bias``/``weight`` parameter (``affine`` is True only
  with both);
* ``synchronized=True``: the batch variance is Keras's ``max(E[x²] - E[x]², 0)``
  over this process's batch (as Keras outside a distribution strategy). That formula
  cancels when ``|mean| ≫ std``, so it matches Keras only to its own rounding there
  (float64 outputs: 1e-12 at mean/std ≈ 1, 3e-10 at mean/std = 500).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "KERAS_BN_EPSILON",
    "KERAS_BN_MOMENTUM",
    "KERAS_EPSILON",
    "BatchNorm1d",
    "BatchNorm2d",
    "Normalization",
]

KERAS_BN_EPSILON = 1e-3  # keras.layers.BatchNormalization(epsilon=...)
KERAS_BN_MOMENTUM = 0.99  # Keras's momentum: the weight of the old moving statistics
KERAS_EPSILON = 1e-7  # keras.config.epsilon(), Normalization's floor on the std


def _setup(
    bn: _KerasBatchNorm,
    *,
    center: bool,
    scale: bool,
    keras_momentum: float,
    trainable: bool,
    synchronized: bool,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> None:
    n = bn.num_features
    if scale and bn.weight is None:
        bn.weight = nn.Parameter(torch.ones(n, device=device, dtype=dtype))
    if center and bn.bias is None:
        bn.bias = nn.Parameter(torch.zeros(n, device=device, dtype=dtype))
    bn.keras_momentum = float(keras_momentum)
    bn.trainable = bool(trainable)
    bn.synchronized = bool(synchronized)
    if not trainable:
        for p in bn.parameters():
            p.requires_grad_(False)


class _KerasBatchNorm(nn.modules.batchnorm._BatchNorm):
    """The Keras arithmetic shared by ``BatchNorm1d`` and ``BatchNorm2d``."""

    keras_momentum: float
    trainable: bool
    synchronized: bool
    channel_dim: int  # the torch dim holding the channels: 1, or -1 for (N, ..., C)
    # Keras 2 (tf_keras) updates a 4-D input's moving variance with the *unbiased* batch
    # variance (its fused kernel's Bessel correction); Keras 3 with the biased one.
    bessel_moving_variance: bool = False

    def _moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        dims = [d for d in range(x.dim()) if d != self.channel_dim % x.dim()]
        if self.synchronized:  # keras/src/backend/tensorflow/nn.py: _compute_moments_sync
            count = x.numel() // x.shape[self.channel_dim]
            mean = x.sum(dim=dims) / count
            var = torch.clamp_min((x * x).sum(dim=dims) / count - torch.square(mean), 0.0)
            return mean, var
        var, mean = torch.var_mean(x, dim=dims, correction=0)  # biased, as tf.nn.moments
        return mean, var

    def _inv_shift(self, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
        inv = torch.rsqrt(var + self.eps)  # tf.nn.batch_normalization
        if self.weight is not None:
            inv = inv * self.weight
        shift = self.bias - mean * inv if self.bias is not None else -mean * inv
        return inv, shift

    def _normalize(self, x: Tensor, inv: Tensor, shift: Tensor) -> Tensor:
        if self.channel_dim == 1:
            shape = (-1,) + (1,) * (x.dim() - 2)
            inv, shift = inv.reshape(shape), shift.reshape(shape)
        return x * inv + shift

    def forward(self, input: Tensor) -> Tensor:
        x = input
        assert self.running_mean is not None and self.running_var is not None
        if not (self.training and self.trainable):
            if self.channel_dim == 1:  # torch's kernel: the same formula, one pass
                return F.batch_norm(
                    x, self.running_mean, self.running_var, self.weight, self.bias,
                    False, 0.0, self.eps,
                )  # fmt: skip
            return self._normalize(x, *self._inv_shift(self.running_mean, self.running_var))
        mean, var = self._moments(x)
        with torch.no_grad():
            m = self.keras_momentum
            moving_var = var
            if self.bessel_moving_variance:
                n = x.numel() // x.shape[self.channel_dim]
                moving_var = var * (n / max(n - 1, 1))
            self.running_mean.copy_(self.running_mean * m + mean * (1.0 - m))
            self.running_var.copy_(self.running_var * m + moving_var * (1.0 - m))
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        return self._normalize(x, *self._inv_shift(mean, var))

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, keras_momentum={self.keras_momentum}, "
            f"center={self.bias is not None}, scale={self.weight is not None}, "
            f"trainable={self.trainable}" + (", synchronized=True" if self.synchronized else "")
        )


class BatchNorm2d(_KerasBatchNorm, nn.BatchNorm2d):
    """Keras's ``BatchNormalization`` on an NCHW map (the Keras channel axis, torch dim 1).

    >>> bn = BatchNorm2d(3).eval()
    >>> bn(torch.ones(1, 3, 2, 2))[0, 0, 0, 0].item()  # 1 / sqrt(1 + 1e-3)
    0.99950...
    """

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = KERAS_BN_EPSILON,
        momentum: float = KERAS_BN_MOMENTUM,
        center: bool = True,
        scale: bool = True,
        trainable: bool = True,
        synchronized: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=1.0 - momentum,
            affine=center and scale,
            device=device,
            dtype=dtype,
        )
        self.channel_dim = 1
        _setup(
            self,
            center=center,
            scale=scale,
            keras_momentum=momentum,
            trainable=trainable,
            synchronized=synchronized,
            device=device,
            dtype=dtype,
        )


class BatchNorm1d(_KerasBatchNorm, nn.BatchNorm1d):
    """Keras's ``BatchNormalization`` on vectors ``(N, C)`` or channels-last ``(N, ..., C)``.

    ``channel_dim`` is 1 for ``(N, C)`` (torch's kernel) and -1 for higher ranks
    carried in Keras's order (the Keras channel axis is last).
    """

    def __init__(
        self,
        num_features: int,
        *,
        channel_dim: int = 1,
        eps: float = KERAS_BN_EPSILON,
        momentum: float = KERAS_BN_MOMENTUM,
        center: bool = True,
        scale: bool = True,
        trainable: bool = True,
        synchronized: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if channel_dim not in (1, -1):
            raise ValueError(f"channel_dim must be 1 or -1. Received: channel_dim={channel_dim}")
        super().__init__(
            num_features,
            eps=eps,
            momentum=1.0 - momentum,
            affine=center and scale,
            device=device,
            dtype=dtype,
        )
        self.channel_dim = channel_dim
        _setup(
            self,
            center=center,
            scale=scale,
            keras_momentum=momentum,
            trainable=trainable,
            synchronized=synchronized,
            device=device,
            dtype=dtype,
        )


class Normalization(nn.Module):
    """Keras's ``Normalization`` preprocessing layer: ``(x - mean) / max(sqrt(var), 1e-7)``.

    keras/src/layers/preprocessing/normalization.py. ``mean``/``variance`` are held in
    torch layout, broadcastable against the input (``(C, 1, 1)`` for a map normalized
    per channel). An adapted layer's statistics are Keras variables (``mean``,
    ``variance`` and the int ``count`` of samples seen: persistent buffers); statistics
    given in the config are constants (non-persistent buffers).
    """

    mean: Tensor
    variance: Tensor
    count: Tensor | None

    def __init__(
        self,
        shape: Sequence[int],
        *,
        variables: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in shape)
        self.register_buffer(
            "mean", torch.zeros(shape, device=device, dtype=dtype), persistent=variables
        )
        self.register_buffer(
            "variance", torch.ones(shape, device=device, dtype=dtype), persistent=variables
        )
        if variables:
            self.register_buffer("count", torch.zeros((), device=device, dtype=torch.int64))
        else:
            self.count = None

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / torch.clamp_min(torch.sqrt(self.variance), KERAS_EPSILON)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}"
