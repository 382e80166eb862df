"""A zoo of small Keras CNNs for the parity suite of ``torch_cnn.from_keras``.

Each entry is built in code, takes one 32×32×3 image (CIFAR-10's size; the
``unsupported`` entries excepted), has well under 50k parameters, and covers
the trap its docstring names. ``scripts/make_keras_zoo.py`` saves every
supported entry in each Keras file format with Keras's outputs beside them
(``parity_tests/zoo/<name>/``); ``scripts/make_keras2_zoo.py`` does the same
with ``tf_keras`` for the entries marked ``keras2``. ``parity_tests/zoo/FORMATS.md``
describes those files for the torch-side parser.

Builders take the Keras module as a parameter, so the ``keras2`` entries build
with Keras 3 (``import keras``) and with Keras 2 (``import tf_keras``) alike.
API differences handled here: ``LeakyReLU(negative_slope=)`` (Keras 3) is
``LeakyReLU(alpha=)`` in Keras 2; Keras 2 has no ``keras.ops`` (``x + 3.0`` on a
Keras 2 tensor records a ``TFOpLambda`` layer instead of a Keras 3 ops node) and
no ``relu6``/``leaky_relu``/``silu``/``hard_silu`` activation names.

>>> from keras_ref import zoo
>>> model = zoo.build("residual_bn")
>>> model.input_shape, model.output_shape
((None, 32, 32, 3), (None, 10))
>>> zoo.ZOO["leaky_relu_default_slope"].family
'activation'

``build`` calls ``clear_session`` first, so that Keras's automatic names
(``conv2d``, ``conv2d_1``, ``add``) and the stored files agree whatever was
built before in the process; it restores floatx and the dtype policy after.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

INPUT_SHAPE = (32, 32, 3)
DTYPES = ("float32", "float64")
FAMILIES = (
    "conv", "depthwise", "transpose", "dense", "pooling", "shape", "batchnorm", "regularization",
    "preprocessing", "activation", "merge", "ops", "nested", "head", "unsupported",
)  # fmt: skip


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: ``fn(keras_module)`` builds it; ``notes`` (its docstring) names the trap."""

    name: str
    fn: Callable[[ModuleType], Any]
    family: str
    supported: bool  # False: torch_cnn.from_keras must refuse it, naming the reason
    keras2: bool  # the builder also runs with tf_keras (Keras 2); fixtures keras2_<name>
    notes: str

    def builder(self, keras_module: ModuleType, dtype: str = "float32") -> Any:
        """The model, built fresh (names from a cleared session) with every layer in ``dtype``."""
        return _build_fresh(keras_module, self.fn, dtype)


ZOO: dict[str, ZooEntry] = {}


def register(
    family: str, *, supported: bool = True, keras2: bool = False
) -> Callable[[Callable[[ModuleType], Any]], Callable[[ModuleType], Any]]:
    """Add the decorated builder to ``ZOO`` under its function name (a duplicate raises)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}. Expected one of {FAMILIES}")

    def add(fn: Callable[[ModuleType], Any]) -> Callable[[ModuleType], Any]:
        if fn.__name__ in ZOO:
            raise ValueError(f"zoo entry {fn.__name__!r} is registered twice")
        if not fn.__doc__:
            raise ValueError(f"zoo entry {fn.__name__!r} needs a docstring naming its trap")
        notes = " ".join(fn.__doc__.split())
        ZOO[fn.__name__] = ZooEntry(fn.__name__, fn, family, supported, keras2, notes)
        return fn

    return add


def list_zoo(*, supported: bool | None = None, keras2: bool | None = None) -> list[str]:
    """Entry names, sorted; filtered by ``supported`` / ``keras2`` when given."""
    return sorted(
        name
        for name, e in ZOO.items()
        if (supported is None or e.supported == supported)
        and (keras2 is None or e.keras2 == keras2)
    )


def build(name: str, dtype: str = "float32", keras_module: ModuleType | None = None) -> Any:
    """Zoo entry ``name`` built with ``keras_module`` (default: Keras 3) in ``dtype``."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo entry {name!r}. Known: {', '.join(sorted(ZOO))}")
    return ZOO[name].builder(keras_module or _keras3(), dtype)


def is_keras2(k: ModuleType) -> bool:
    return str(k.__version__).startswith("2.")


def _keras3() -> ModuleType:
    return importlib.import_module("keras")


@contextmanager
def dtype_scope(k: ModuleType, dtype: str) -> Iterator[None]:
    """Layers created inside get ``dtype`` (Keras 3: floatx and the dtype policy; Keras 2:
    floatx, which its default policy follows)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}. Received: dtype={dtype!r}")
    floatx = k.backend.floatx()
    policy = None if is_keras2(k) else k.config.dtype_policy()
    k.backend.set_floatx(dtype)
    if policy is not None:
        k.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        k.backend.set_floatx(floatx)
        if policy is not None:
            k.config.set_dtype_policy(policy)


def _build_fresh(k: ModuleType, fn: Callable[[ModuleType], Any], dtype: str) -> Any:
    floatx = k.backend.floatx()
    policy = None if is_keras2(k) else k.config.dtype_policy()
    if is_keras2(k):
        k.backend.clear_session()
    else:
        k.backend.clear_session(free_memory=False)  # also clears the policy: restored below
    try:
        with dtype_scope(k, dtype):
            return fn(k)
    finally:
        k.backend.set_floatx(floatx)
        if policy is not None:
            k.config.set_dtype_policy(policy)


# --- Seeded weights ----------------------------------------------------------------------

_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel")


def _draw(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name in _KERNELS and len(shape) >= 2:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = receptive * shape[-2], receptive * shape[-1]
        limit = np.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, Keras's default scale
        return rng.uniform(-limit, limit, shape)
    if name in ("gamma", "scale"):
        return rng.uniform(0.5, 1.5, shape)
    if name in ("moving_variance", "variance"):
        return rng.uniform(0.5, 2.0, shape)
    if name == "alpha":  # PReLU slopes
        return rng.uniform(0.05, 0.5, shape)
    if name in ("beta", "moving_mean", "mean"):
        return rng.uniform(-0.5, 0.5, shape)
    return rng.uniform(-0.2, 0.2, shape)  # biases and anything else: non-zero


def seed_weights(model: Any, seed: int) -> list[np.ndarray]:
    """Set every floating-point variable of ``model`` from a seeded NumPy RNG; return them all.

    Kernels are Glorot-uniform; biases, BN beta and moving means are non-zero; BN gamma is in
    [0.5, 1.5]; moving variances (and Normalization's variance) are in [0.5, 2]; PReLU slopes in
    [0.05, 0.5]. Integer variables (Normalization's ``count``) are kept. Nothing is left at a
    Keras default, so a value the torch side fails to copy shows.
    """
    rng = np.random.default_rng(seed)
    values = []
    for variable in model.weights:
        current = np.asarray(variable)
        name = variable.name.split("/")[-1].split(":")[0]  # Keras 2: "conv2d/kernel:0"
        if np.issubdtype(current.dtype, np.floating):
            values.append(_draw(rng, name, current.shape).astype(current.dtype))
        else:
            values.append(current)
    set_weights(model, values)
    return values


def set_weights(model: Any, values: list[np.ndarray]) -> None:
    """``model.set_weights(values)``, then ``finalize_state()`` on the layers that cache their
    variables (an adapted Normalization computes with tensors derived from its mean and variance
    in finalize_state, which loading calls but set_weights does not)."""
    model.set_weights(values)
    for layer in _all_layers(model):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out += [layer, *_all_layers(layer)]
    return out


# --- keras.applications -------------------------------------------------------------------

# The smallest input each accepts with weights=None: 32×32 for all five
# (keras/src/applications/imagenet_utils.py obtain_input_shape, min_size=32; MobileNetV3 has
# no check and runs at 32×32: its last feature map is 1×1).
APPLICATIONS = {
    "MobileNetV2": (32, 32, 3),
    "EfficientNetB0": (32, 32, 3),
    "MobileNetV3Small": (32, 32, 3),
    "VGG16": (32, 32, 3),
    "ConvNeXtTiny": (32, 32, 3),
}


def applications_model(
    name: str, dtype: str = "float32", keras_module: ModuleType | None = None, seed: int = 0
) -> Any:
    """``keras.applications.<name>`` with weights=None, classes=10, its smallest input
    (``APPLICATIONS``) and every variable seeded by ``seed_weights`` (random BN statistics).

    Too large to store (1.5M–33.6M parameters): the tests build these live.
    """
    if name not in APPLICATIONS:
        raise ValueError(f"unknown application {name!r}. Known: {', '.join(APPLICATIONS)}")
    k = keras_module or _keras3()

    def make(k: ModuleType) -> Any:
        return getattr(k.applications, name)(
            input_shape=APPLICATIONS[name], weights=None, include_top=True, classes=10
        )

    model = _build_fresh(k, make, dtype)
    seed_weights(model, seed)
    return model


def custom_objects(k: ModuleType) -> dict[str, Any]:
    """What ``load_model`` needs for the unsupported custom-layer entry."""
    cls = _channel_scale_class(k)
    return {"torch_cnn_zoo>ChannelScale": cls}


# --- Shared pieces ---------------------------------------------------------------------------

# Every activation name both Keras 3's Activation and fused `activation=` accept, as the
# torch side must map them. Keras 2 lacks relu6, leaky_relu, silu (it has swish).
ACTIVATIONS = (
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softmax", "elu", "selu",
    "gelu", "swish", "softplus", "softsign", "leaky_relu",
)  # fmt: skip


def _input(k: ModuleType) -> Any:
    return k.Input(shape=INPUT_SHAPE)


def _sequential(k: ModuleType, name: str, layers: list[Any]) -> Any:
    return k.Sequential([_input(k), *layers], name=name)


def _stem(k: ModuleType, x: Any, filters: int = 4, size: int = 4) -> Any:
    """A patchify conv (kernel = stride = ``size``): 32×32 → (32/size)², small stored outputs."""
    return k.layers.Conv2D(filters, size, strides=size)(x)


def _scaled_stem(k: ModuleType, x: Any) -> Any:
    """(4, 4, 2) maps scaled by 3, so relu6 and hard_sigmoid saturate and the ReLU threshold and
    max_value are crossed."""
    return k.layers.Rescaling(3.0)(_stem(k, x, filters=2, size=8))


def _head(k: ModuleType, x: Any, activation: str | None = None) -> Any:
    return k.layers.Dense(10, activation=activation)(k.layers.Flatten()(x))


def _leaky_relu(k: ModuleType, slope: float | None = None) -> Any:
    if slope is None:
        return k.layers.LeakyReLU()
    if is_keras2(k):
        return k.layers.LeakyReLU(alpha=slope)
    return k.layers.LeakyReLU(negative_slope=slope)


# --- conv ----------------------------------------------------------------------------------


@register("conv", keras2=True)
def seed_like_cnn(k: ModuleType) -> Any:
    """Seed 000's model_cnn with fewer filters: Conv2D 4×4 stride 2 'same' (TF pads 1/1 on 32),
    Conv2D 3×3 stride 2 'same' (TF pads 0 before, 1 after on 16), Flatten → Dense softmax."""
    x = _input(k)
    h = k.layers.Conv2D(2, 4, strides=2, padding="same")(x)
    h = k.layers.Conv2D(4, 3, strides=2, padding="same")(h)
    return k.Model(x, _head(k, h, "softmax"), name="seed_like_cnn")


@register("conv")
def conv_same_even_kernel_stride2(k: ModuleType) -> Any:
    """TF's asymmetric 'same' rule with even kernels: 4×4/2 on 32 pads 1/1, 2×2/1 pads 0/1,
    4×4/2 on an odd 15 pads 1/2, kernel (2, 4) stride (1, 2) pads 0/1 and 1/1."""
    x = _input(k)
    h = k.layers.Conv2D(2, 4, strides=2, padding="same")(x)
    h = k.layers.Conv2D(2, 2, padding="same")(h)
    h = k.layers.Cropping2D(((0, 1), (0, 1)))(h)
    h = k.layers.Conv2D(4, 4, strides=2, padding="same")(h)
    h = k.layers.Conv2D(4, (2, 4), strides=(1, 2), padding="same")(h)
    return k.Model(x, _head(k, h), name="conv_same_even_kernel_stride2")


@register("conv")
def conv_same_odd_kernel_stride2(k: ModuleType) -> Any:
    """'same' with odd kernels and stride > 1: 3×3/2 on 32 pads 0/1, 5×5/2 on 16 pads 1/2,
    3×3/2 on an odd 7 pads 1/1, 3×3/3 on 4 pads 1/1 (torch's symmetric padding fails on the
    first two)."""
    x = _input(k)
    h = k.layers.Conv2D(2, 3, strides=2, padding="same")(x)
    h = k.layers.Conv2D(4, 5, strides=2, padding="same")(h)
    h = k.layers.Cropping2D(((0, 1), (0, 1)))(h)
    h = k.layers.Conv2D(4, 3, strides=2, padding="same")(h)
    h = k.layers.Conv2D(4, 3, strides=3, padding="same")(h)
    return k.Model(x, _head(k, h, "softmax"), name="conv_same_odd_kernel_stride2")


@register("conv")
def conv_rect_kernel_stride(k: ModuleType) -> Any:
    """Non-square kernels and strides: (1, 3)/(1, 2) 'same', (3, 1)/(2, 1) 'valid', (2, 5) 'same'
    (pads 0/1 in height, 2/2 in width): a swapped (h, w) anywhere shows."""
    x = _input(k)
    h = k.layers.AveragePooling2D(2)(x)
    h = k.layers.Conv2D(2, (1, 3), strides=(1, 2), padding="same")(h)
    h = k.layers.Conv2D(2, (3, 1), strides=(2, 1))(h)
    h = k.layers.Conv2D(4, (2, 5), padding="same", activation="tanh")(h)
    return k.Model(x, _head(k, h), name="conv_rect_kernel_stride")


@register("conv")
def conv_dilated(k: ModuleType) -> Any:
    """Dilation: 3×3 rate 2 'same' (pads 2/2), 2×2 rate 3 'same' (effective 4: pads 1/2),
    3×3 rate (2, 3) 'valid' (8×8 → 4×2)."""
    x = _input(k)
    h = _stem(k, x)
    h = k.layers.Conv2D(4, 3, dilation_rate=2, padding="same")(h)
    h = k.layers.Conv2D(4, 2, dilation_rate=3, padding="same")(h)
    h = k.layers.Conv2D(4, 3, dilation_rate=(2, 3))(h)
    return k.Model(x, _head(k, h), name="conv_dilated")


@register("conv")
def conv_groups_no_bias(k: ModuleType) -> Any:
    """Grouped convs (kernel (kh, kw, in/groups, out)): groups=4 with use_bias=False, then
    groups=2 with a fused relu."""
    x = _input(k)
    h = _stem(k, x)
    h = k.layers.Conv2D(8, 3, padding="same", groups=4, use_bias=False)(h)
    h = k.layers.Conv2D(4, 3, groups=2, activation="relu")(h)
    return k.Model(x, _head(k, h), name="conv_groups_no_bias")


@register("activation")
def conv_fused_activations(k: ModuleType) -> Any:
    """Every name in ACTIVATIONS fused into a 1×1 Conv2D (softmax over channels, hard_sigmoid
    as Keras 3's relu6(x + 3) / 6, leaky_relu with the function's slope 0.2), on inputs scaled
    by 3 so relu6 and hard_sigmoid saturate; branches concatenated."""
    x = _input(k)
    h = _scaled_stem(k, x)
    branches = [
        k.layers.Conv2D(2, 1, activation=name, name=f"conv_{name}")(h) for name in ACTIVATIONS
    ]
    return k.Model(x, _head(k, k.layers.Concatenate()(branches)), name="conv_fused_activations")


# --- depthwise / separable ---------------------------------------------------------------------


@register("depthwise")
def depthwise_multiplier2(k: ModuleType) -> Any:
    """DepthwiseConv2D with depth_multiplier=2 (kernel (kh, kw, in, 2): output channel
    c * 2 + m), then stride 2 'same' on 8 (pads 0/1), no bias, fused relu6."""
    x = _input(k)
    h = _stem(k, x)
    h = k.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    strided = k.layers.DepthwiseConv2D(
        3, strides=2, padding="same", use_bias=False, activation="relu6"
    )
    h = strided(h)
    return k.Model(x, _head(k, h), name="depthwise_multiplier2")


@register("depthwise")
def separable_conv(k: ModuleType) -> Any:
    """SeparableConv2D: depthwise (multiplier 2) then pointwise kernels, one bias; 'same' with a
    fused relu, then stride 2 'valid' with use_bias=False."""
    x = _input(k)
    h = _stem(k, x)
    h = k.layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu")(h)
    h = k.layers.SeparableConv2D(4, 3, strides=2, use_bias=False)(h)
    return k.Model(x, _head(k, h, "softmax"), name="separable_conv")


# --- transpose -----------------------------------------------------------------------------------


@register("transpose")
def conv_transpose_valid(k: ModuleType) -> Any:
    """Conv2DTranspose 'valid': kernel (kh, kw, out, in); 3×3 stride 2 (4 → 9), then 2×2 stride 2
    with output_padding=1 (9 → 19) and no bias."""
    x = _input(k)
    h = _stem(k, x, size=8)
    h = k.layers.Conv2DTranspose(4, 3, strides=2)(h)
    h = k.layers.Conv2DTranspose(2, 2, strides=2, output_padding=1, use_bias=False)(h)
    h = k.layers.GlobalAveragePooling2D()(h)
    return k.Model(x, k.layers.Dense(10)(h), name="conv_transpose_valid")


@register("transpose")
def conv_transpose_same_output_padding(k: ModuleType) -> Any:
    """Conv2DTranspose 'same' crops the full (in - 1) * stride + kernel output by the forward
    conv's 'same' pads: kernel (3, 5), strides (2, 3), output_padding (1, 2) (4×4 → 8×12; rows
    cropped 0 top / 1 bottom, columns 1/1), an even 4×4 kernel stride 2 (1/1), then 3×3 stride
    2 with a fused relu (0/1 again: torch's padding=1, output_padding=1 would crop the top row)."""
    x = _input(k)
    h = _stem(k, x, size=8)
    padded = k.layers.Conv2DTranspose(
        4, (3, 5), strides=(2, 3), padding="same", output_padding=(1, 2)
    )
    h = padded(h)
    h = k.layers.Conv2DTranspose(2, 4, strides=2, padding="same")(h)
    h = k.layers.AveragePooling2D(4)(h)
    h = k.layers.Conv2DTranspose(2, 3, strides=2, padding="same", activation="relu")(h)
    return k.Model(x, _head(k, h), name="conv_transpose_same_output_padding")


# --- dense / flatten / shape ----------------------------------------------------------------


@register("dense")
def dense_on_map(k: ModuleType) -> Any:
    """Dense on a 4-D map acts on the last axis only (kernel (C, units) at every pixel): two of
    them, then Flatten → Dense softmax."""
    x = _input(k)
    h = k.layers.Dense(6, activation="relu")(_stem(k, x))
    h = k.layers.Dense(3)(h)
    return k.Model(x, _head(k, h, "softmax"), name="dense_on_map")


@register("dense")
def dense_fused_activations(k: ModuleType) -> Any:
    """Activations fused into a Dense on 2-D input, after GlobalAveragePooling2D: softmax (over
    units), selu, softsign, hard_sigmoid, leaky_relu and gelu; branches concatenated. (Every
    name is fused into a conv in conv_fused_activations.)"""
    x = _input(k)
    h = k.layers.Rescaling(3.0)(k.layers.GlobalAveragePooling2D()(_stem(k, x, size=8)))
    names = ("softmax", "selu", "softsign", "hard_sigmoid", "leaky_relu", "gelu")
    branches = [k.layers.Dense(3, activation=name, name=f"dense_{name}")(h) for name in names]
    out = k.layers.Dense(10)(k.layers.Concatenate()(branches))
    return k.Model(x, out, name="dense_fused_activations")


@register("dense")
def flatten_dense_nonsquare(k: ModuleType) -> Any:
    """Flatten → Dense on a non-square map: 32×32 cropped to 28×30, conv stride 2 → 13×14, pool →
    6×7×4. Keras flattens (H, W, C); torch's (C, H, W) needs the row permutation, and a
    square-map assumption swaps H and W."""
    x = _input(k)
    h = k.layers.Cropping2D(((2, 2), (1, 1)))(x)
    h = k.layers.Conv2D(4, 3, strides=2)(h)
    h = k.layers.MaxPooling2D()(h)
    return k.Model(x, _head(k, h), name="flatten_dense_nonsquare")


@register("dense", keras2=True)
def flatten_dropout_dense(k: ModuleType) -> Any:
    """Sequential like seed 001: a 'valid' conv with a fused relu and stride 2 on an even size
    (32 → 15), MaxPooling2D, Flatten of an odd 7×7×4 map → Dropout → Dense softmax: the Flatten
    permutation must reach the Dense through a Dropout (identity at inference)."""
    return _sequential(
        k,
        "flatten_dropout_dense",
        [
            k.layers.Conv2D(4, 3, strides=2, activation="relu"),
            k.layers.MaxPooling2D(),
            k.layers.Flatten(),
            k.layers.Dropout(0.5, seed=1),
            k.layers.Dense(10, activation="softmax"),
        ],
    )


@register("shape")
def reshape_after_dense(k: ModuleType) -> Any:
    """Dense(128) → Reshape((4, 4, 8)): the units fill (H, W, C) in Keras order, so a torch
    view(-1, 8, 4, 4) without a permute scrambles the map."""
    x = _input(k)
    h = k.layers.GlobalAveragePooling2D()(_stem(k, x, size=8))
    h = k.layers.Dense(128)(h)
    h = k.layers.Reshape((4, 4, 8))(h)
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    return k.Model(x, _head(k, h), name="reshape_after_dense")


@register("shape")
def permute_on_map(k: ModuleType) -> Any:
    """Permute((2, 1, 3)) swaps H and W of a map, before a (1, 3) kernel with strides (1, 2), so
    a missing or wrong permute shows; then Reshape((-1,)) in place of Flatten (the same
    (H, W, C) order, so the same Dense row permutation)."""
    x = _input(k)
    h = k.layers.Permute((2, 1, 3))(_stem(k, x))
    h = k.layers.Conv2D(4, (1, 3), strides=(1, 2))(h)
    h = k.layers.Reshape((-1,))(h)
    return k.Model(x, k.layers.Dense(10)(h), name="permute_on_map")


@register("shape")
def padding_cropping_asymmetric(k: ModuleType) -> Any:
    """ZeroPadding2D(((1, 2), (0, 3))) ((top, bottom), (left, right); torch's F.pad takes
    (left, right, top, bottom)): 8×8 → 11×11, ZeroPadding2D(1), then Cropping2D(((1, 2), (3, 0)))
    (a zero crop on one side: slicing to -0 is empty) and Cropping2D(1)."""
    x = _input(k)
    h = k.layers.ZeroPadding2D(((1, 2), (0, 3)))(_stem(k, x, filters=2))
    h = k.layers.Conv2D(2, 3)(h)
    h = k.layers.ZeroPadding2D(1)(h)
    h = k.layers.Cropping2D(((1, 2), (3, 0)))(h)
    h = k.layers.Cropping2D(1)(h)
    return k.Model(x, _head(k, h), name="padding_cropping_asymmetric")


@register("shape")
def upsampling_nearest_bilinear(k: ModuleType) -> Any:
    """UpSampling2D nearest (size 2, then (2, 1): rows only) and bilinear (tf.image.resize with
    half-pixel centres, torch's align_corners=False; size 2, then (3, 2))."""
    x = _input(k)
    h = _stem(k, x, filters=2, size=8)
    a = k.layers.UpSampling2D(2)(h)
    a = k.layers.UpSampling2D((2, 1))(k.layers.Conv2D(2, 3, padding="same")(a))
    b = k.layers.UpSampling2D(2, interpolation="bilinear")(h)
    b = k.layers.Conv2D(2, 3, padding="same")(b)
    b = k.layers.UpSampling2D((3, 2), interpolation="bilinear")(b)
    pooled = [k.layers.GlobalMaxPooling2D()(a), k.layers.GlobalMaxPooling2D()(b)]
    out = k.layers.Dense(10)(k.layers.Concatenate()(pooled))
    return k.Model(x, out, name="upsampling_nearest_bilinear")


# --- pooling ----------------------------------------------------------------------------------


@register("pooling")
def maxpool_same_and_strides(k: ModuleType) -> Any:
    """MaxPooling2D 3/2 'same' on 16 (pads 0/1, with -inf: the conv outputs are partly
    negative), 2/1 'valid' (overlapping windows), 2 'same' on an odd 7 (pads 0/1), pool (2, 3)
    stride (1, 2)."""
    x = _input(k)
    h = k.layers.Conv2D(2, 2, strides=2)(x)
    h = k.layers.MaxPooling2D(3, strides=2, padding="same")(h)
    h = k.layers.MaxPooling2D(2, strides=1)(h)
    h = k.layers.MaxPooling2D(2, padding="same")(h)
    h = k.layers.MaxPooling2D((2, 3), strides=(1, 2))(h)
    return k.Model(x, _head(k, h), name="maxpool_same_and_strides")


@register("pooling")
def avgpool_same_excludes_padding(k: ModuleType) -> Any:
    """AveragePooling2D 'same' divides by the number of real pixels in each window (TF
    excludes the padding: torch's count_include_pad=False plus an asymmetric pad): 3/2 on 16
    (pads 0/1), 2/1 (pads 0/1), 3/1 (pads 1/1); then a 'valid' pool (3, 2) with strides (2, 1),
    a size that differs from the stride."""
    x = _input(k)
    h = k.layers.Conv2D(2, 2, strides=2)(x)
    h = k.layers.AveragePooling2D(3, strides=2, padding="same")(h)
    h = k.layers.AveragePooling2D(2, strides=1, padding="same")(h)
    h = k.layers.AveragePooling2D(3, strides=1, padding="same")(h)
    h = k.layers.AveragePooling2D((3, 2), strides=(2, 1))(h)
    return k.Model(x, _head(k, h), name="avgpool_same_excludes_padding")


@register("pooling")
def global_pooling_keepdims(k: ModuleType) -> Any:
    """GlobalAveragePooling2D(keepdims=True) (N, 1, 1, C) → 1×1 Conv2D → Flatten, beside
    GlobalMaxPooling2D (keepdims False, (N, C)) → Flatten (a no-op on 2-D: no permutation) →
    Dense, and GlobalMaxPooling2D(keepdims=True) → Flatten; concatenated."""
    x = _input(k)
    h = _stem(k, x)
    a = k.layers.GlobalAveragePooling2D(keepdims=True)(h)
    a = k.layers.Flatten()(k.layers.Conv2D(8, 1, activation="relu")(a))
    b = k.layers.Dense(4)(k.layers.Flatten()(k.layers.GlobalMaxPooling2D()(h)))
    c = k.layers.Flatten()(k.layers.GlobalMaxPooling2D(keepdims=True)(h))
    out = k.layers.Dense(10)(k.layers.Concatenate()([a, b, c]))
    return k.Model(x, out, name="global_pooling_keepdims")


# --- batchnorm ------------------------------------------------------------------------------


@register("batchnorm")
def bn_custom_eps_momentum(k: ModuleType) -> Any:
    """BatchNormalization with epsilon=0.1 / momentum=0.9 and epsilon=1e-2 / momentum=0.5 (a
    torch default eps of 1e-5 is off by ~1e-2), after a bias-free conv; then a default BN on a
    2-D Dense output (torch's BatchNorm1d) and a softmax head."""
    x = _input(k)
    h = k.layers.Conv2D(4, 4, strides=4, use_bias=False)(x)
    h = k.layers.BatchNormalization(epsilon=0.1, momentum=0.9)(h)
    h = k.layers.ReLU()(h)
    h = k.layers.Conv2D(4, 3)(h)
    h = k.layers.BatchNormalization(epsilon=1e-2, momentum=0.5)(h)
    h = k.layers.Dense(16)(k.layers.Flatten()(h))
    h = k.layers.Activation("relu")(k.layers.BatchNormalization()(h))
    return k.Model(x, k.layers.Dense(10, activation="softmax")(h), name="bn_custom_eps_momentum")


@register("batchnorm")
def bn_center_scale_false(k: ModuleType) -> Any:
    """BatchNormalization with center=False (no beta), scale=False (no gamma) and both: 3, 3 and
    2 stored weights instead of 4, so weights matched by position go wrong."""
    x = _input(k)
    h = _stem(k, x, size=8)
    h = k.layers.BatchNormalization(center=False)(h)
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    h = k.layers.BatchNormalization(scale=False)(h)
    h = k.layers.Conv2D(4, 3)(h)
    h = k.layers.BatchNormalization(center=False, scale=False)(h)
    return k.Model(x, _head(k, h), name="bn_center_scale_false")


@register("merge", keras2=True)
def residual_bn(k: ModuleType) -> Any:
    """Two ResNet basic blocks: Conv-BN-ReLU-Conv-BN + identity shortcut → Add → ReLU, then the
    same with stride 2 and a 1×1 conv + BN projection shortcut; GAP → Dense softmax."""
    L = k.layers
    x = _input(k)
    h = _stem(k, x, size=8)
    r = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(h)))
    r = L.BatchNormalization()(L.Conv2D(4, 3, padding="same", use_bias=False)(r))
    h = L.ReLU()(L.Add()([r, h]))
    r = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(h)
    r = L.ReLU()(L.BatchNormalization()(r))
    r = L.BatchNormalization()(L.Conv2D(8, 3, padding="same", use_bias=False)(r))
    s = L.BatchNormalization()(L.Conv2D(8, 1, strides=2, use_bias=False)(h))
    h = L.ReLU()(L.Add()([r, s]))
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))
    return k.Model(x, out, name="residual_bn")


# --- regularization / preprocessing -------------------------------------------------------------


@register("regularization")
def dropout_noise_inference(k: ModuleType) -> Any:
    """SpatialDropout2D, GaussianNoise, GaussianDropout and Dropout are identities at inference
    (seeded, so the files are reproducible)."""
    x = _input(k)
    h = k.layers.SpatialDropout2D(0.3, seed=2)(_stem(k, x, size=8))
    h = k.layers.GaussianNoise(0.5, seed=3)(h)
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    h = k.layers.GaussianDropout(0.3, seed=4)(h)
    h = k.layers.Dropout(0.5, seed=5)(k.layers.Flatten()(h))
    return k.Model(x, k.layers.Dense(10)(h), name="dropout_noise_inference")


@register("preprocessing")
def rescaling_scale_offset(k: ModuleType) -> Any:
    """Rescaling(scale=2, offset=-1) on the image, then a per-channel Rescaling (scale a list of
    4, offset 0.25) on a map."""
    x = _input(k)
    h = _stem(k, k.layers.Rescaling(2.0, offset=-1.0)(x))
    h = k.layers.Rescaling([0.5, -1.0, 2.0, 1.5], offset=0.25)(h)
    return k.Model(x, _head(k, h), name="rescaling_scale_offset")


@register("preprocessing")
def normalization_given_and_adapted(k: ModuleType) -> Any:
    """Normalization two ways: built with mean=/variance= (CIFAR-10-like statistics that live in
    the config, no weights) on the image, and adapted on data (mean, variance and an int count
    are weights; seed_weights randomises mean and variance) on a map. Keras divides by
    max(sqrt(variance), epsilon)."""
    x = _input(k)
    h = k.layers.Normalization(mean=[0.49, 0.48, 0.45], variance=[0.06, 0.05, 0.07])(x)
    adapted = k.layers.Normalization()
    adapted.adapt(np.random.default_rng(0).random((16, 4, 4, 4)).astype(k.backend.floatx()))
    h = adapted(_stem(k, h, size=8))
    return k.Model(x, _head(k, h), name="normalization_given_and_adapted")


# --- activation layers ------------------------------------------------------------------------


@register("activation")
def activation_layers_piecewise(k: ModuleType) -> Any:
    """Activation layers linear, relu, relu6, hard_sigmoid (Keras 3: relu6(x + 3) / 6),
    hard_silu (MobileNetV3's hard_swish), sigmoid, tanh and softmax on a map (axis -1, the
    channels); ReLU layers with max_value, negative_slope, threshold (Keras refuses a negative
    one) and all three (below the threshold: negative_slope * (x - threshold))."""
    x = _input(k)
    h = _scaled_stem(k, x)
    names = ("linear", "relu", "relu6", "hard_sigmoid", "hard_silu", "sigmoid", "tanh", "softmax")
    branches = [k.layers.Activation(name, name=f"act_{name}")(h) for name in names]
    branches += [
        k.layers.ReLU(max_value=6.0)(h),
        k.layers.ReLU(negative_slope=0.1)(h),
        k.layers.ReLU(threshold=0.5)(h),
        k.layers.ReLU(max_value=4.0, negative_slope=0.2, threshold=1.0)(h),
    ]
    out = _head(k, k.layers.Concatenate()(branches))
    return k.Model(x, out, name="activation_layers_piecewise")


@register("activation")
def activation_layers_smooth(k: ModuleType) -> Any:
    """Activation layers elu, selu, gelu (exact, erf), swish and silu (both stored as "silu"),
    softplus, softsign and leaky_relu (the function's slope 0.2, not the layer's 0.3), and
    keras.ops.gelu(x, approximate=True) (the tanh form: an ops node whose config carries
    approximate=True)."""
    x = _input(k)
    h = _scaled_stem(k, x)
    names = ("elu", "selu", "gelu", "swish", "silu", "softplus", "softsign", "leaky_relu")
    branches = [k.layers.Activation(name, name=f"act_{name}")(h) for name in names]
    branches.append(k.ops.gelu(h, approximate=True))
    return k.Model(x, _head(k, k.layers.Concatenate()(branches)), name="activation_layers_smooth")


@register("activation", keras2=True)
def activations_keras2_vs_3(k: ModuleType) -> Any:
    """What differs between Keras versions: hard_sigmoid (an Activation layer and fused into a
    conv) is relu6(x + 3) / 6 in Keras 3 but clip(0.2 x + 0.5, 0, 1) in Keras 2, so the file's
    keras_version decides; LeakyReLU() stores its default 0.3 as negative_slope (Keras 3) or
    alpha (Keras 2)."""
    x = _input(k)
    h = _scaled_stem(k, x)
    a = k.layers.Activation("hard_sigmoid")(h)
    b = k.layers.Conv2D(2, 1, activation="hard_sigmoid")(h)
    c = _leaky_relu(k)(h)
    return k.Model(x, _head(k, k.layers.Concatenate()([a, b, c])), name="activations_keras2_vs_3")


@register("activation")
def leaky_relu_default_slope(k: ModuleType) -> Any:
    """LeakyReLU() with Keras's default slope 0.3 (torch's default is 0.01), then
    LeakyReLU with slope 0.05."""
    x = _input(k)
    h = _leaky_relu(k)(_stem(k, x))
    h = k.layers.Conv2D(4, 3)(h)
    h = _leaky_relu(k, 0.05)(h)
    return k.Model(x, _head(k, h), name="leaky_relu_default_slope")


@register("activation")
def prelu_shared_axes(k: ModuleType) -> Any:
    """PReLU(shared_axes=[1, 2]) (alpha (1, 1, C): one slope per channel) and PReLU() (alpha
    (H, W, C): one per element)."""
    x = _input(k)
    h = k.layers.PReLU(shared_axes=[1, 2])(_stem(k, x, size=8))
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    h = k.layers.PReLU()(h)
    return k.Model(x, _head(k, h), name="prelu_shared_axes")


@register("activation")
def elu_softmax_layers(k: ModuleType) -> Any:
    """ELU layers (alpha 1 and 0.5), a Softmax layer on a map (axis -1, the channels) and a
    Softmax layer as the head (probabilities)."""
    x = _input(k)
    h = k.layers.ELU()(_stem(k, x, size=8))
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    h = k.layers.ELU(alpha=0.5)(h)
    h = k.layers.Softmax()(h)
    return k.Model(x, k.layers.Softmax()(_head(k, h)), name="elu_softmax_layers")


# --- merges -------------------------------------------------------------------------------------


@register("merge")
def merge_elementwise(k: ModuleType) -> Any:
    """Add (three inputs), Subtract (order matters), Multiply, Average, Maximum (three inputs) and
    Minimum on conv branches, concatenated."""
    L = k.layers
    x = _input(k)
    h = _stem(k, x, size=8)
    a = L.Conv2D(2, 1)(h)
    b = L.Conv2D(2, 3, padding="same")(h)
    c = L.Conv2D(2, 1, activation="relu")(h)
    merged = [
        L.Add()([a, b, c]),
        L.Subtract()([a, b]),
        L.Multiply()([a, b]),
        L.Average()([a, c]),
        L.Maximum()([a, b, c]),
        L.Minimum()([b, c]),
    ]
    return k.Model(x, _head(k, L.Concatenate()(merged)), name="merge_elementwise")


@register("merge")
def concat_axes(k: ModuleType) -> Any:
    """Concatenate on axis -1 (channels), 1 (height: torch dim 2) and 2 (width: torch dim 3)."""
    L = k.layers
    x = _input(k)
    h = _stem(k, x, size=8)
    a = L.Conv2D(2, 1)(h)
    b = L.Conv2D(1, 3, padding="same")(h)
    c = L.Concatenate()([a, b])  # (4, 4, 3)
    d = L.Concatenate(axis=1)([c, L.Conv2D(3, 1)(c)])  # (8, 4, 3)
    e = L.Concatenate(axis=2)([d, L.Conv2D(3, (1, 3), padding="same")(d)])  # (8, 8, 3)
    return k.Model(x, _head(k, e), name="concat_axes")


@register("merge")
def inception_branch_concat(k: ModuleType) -> Any:
    """An inception block: 1×1, 1×1 → 3×3, 1×1 → 5×5 and 3×3/1 'same' max pool → 1×1 branches,
    concatenated on channels; GAP → Dense softmax."""
    L = k.layers
    x = _input(k)
    h = _stem(k, x, size=8)
    b1 = L.Conv2D(4, 1, activation="relu")(h)
    b2 = L.Conv2D(4, 3, padding="same", activation="relu")(L.Conv2D(2, 1)(h))
    b3 = L.Conv2D(2, 5, padding="same", activation="relu")(L.Conv2D(2, 1)(h))
    b4 = L.Conv2D(2, 1, activation="relu")(L.MaxPooling2D(3, strides=1, padding="same")(h))
    h = L.Concatenate()([b1, b2, b3, b4])
    out = L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(h))
    return k.Model(x, out, name="inception_branch_concat")


# --- Keras ops nodes ----------------------------------------------------------------------------


@register("ops", keras2=True)
def ops_scalar_arith(k: ModuleType) -> Any:
    """Python operators on symbolic tensors: x + 3.0, x * (1 / 6), 3.0 - x (constant first),
    x / 2. Keras 3 records ops nodes (keras.src.ops.numpy Add, Multiply, Subtract, TrueDivide);
    Keras 2 records TFOpLambda layers (tf.__operators__.add, tf.math.multiply, ...)."""
    x = _input(k)
    h = _stem(k, x, size=8)
    h = h + 3.0
    h = h * (1 / 6)
    h = 3.0 - h
    h = h / 2
    return k.Model(x, _head(k, h), name="ops_scalar_arith")


@register("ops")
def hard_swish_ops(k: ModuleType) -> Any:
    """MobileNetV3's hard-swish as ops nodes: x * (relu6(x + 3) / 6) (keras.ops.relu6, int
    constants 3 and 6), and x * (ReLU(6.0)(x + 3.0) * (1.0 / 6.0)) as Keras 3's MobileNetV3
    writes it (a Multiply ops node between two tensors)."""
    x = _input(k)
    h = k.layers.Rescaling(3.0)(_stem(k, x, size=8))
    h = k.layers.Multiply()([h, k.ops.relu6(h + 3) / 6])
    h = k.layers.Conv2D(4, 3, padding="same")(h)
    h = h * (k.layers.ReLU(6.0)(h + 3.0) * (1.0 / 6.0))
    return k.Model(x, _head(k, h), name="hard_swish_ops")


# --- nested models -------------------------------------------------------------------------------


@register("nested", keras2=True)
def nested_sequential_in_functional(k: ModuleType) -> Any:
    """A Functional model calling a Sequential "block" built with an Input (Conv-BN-ReLU), then a
    Sequential "tail" without one (built on call); the .keras weights sit under
    layers/sequential/layers/... and layers/sequential_1/... (class paths, not the names)."""
    L = k.layers
    block = k.Sequential(
        [
            k.Input(shape=(4, 4, 4)),
            L.Conv2D(4, 3, padding="same"),
            L.BatchNormalization(),
            L.ReLU(),
        ],
        name="block",
    )
    tail = k.Sequential([L.Conv2D(4, 3), L.MaxPooling2D()], name="tail")
    x = _input(k)
    h = tail(block(_stem(k, x, size=8)))
    return k.Model(x, _head(k, h, "softmax"), name="nested_sequential_in_functional")


def _residual_block(k: ModuleType, name: str) -> Any:
    L = k.layers
    x = k.Input(shape=(4, 4, 4))
    h = L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(x))
    return k.Model(x, L.ReLU()(L.Add()([x, h])), name=name)


@register("nested")
def nested_functional_in_sequential(k: ModuleType) -> Any:
    """A Sequential holding a Functional residual block (Conv-BN + identity Add → ReLU) between a
    stem conv and Flatten → Dense."""
    L = k.layers
    return _sequential(
        k,
        "nested_functional_in_sequential",
        [L.Conv2D(4, 8, strides=8), _residual_block(k, "res_block"), L.Flatten(), L.Dense(10)],
    )


@register("nested")
def nested_two_levels(k: ModuleType) -> Any:
    """Three levels: a Sequential holding a Functional "middle" that calls a Sequential "inner"
    (the .keras weights at layers/functional/layers/sequential/layers/conv2d/vars)."""
    L = k.layers
    inner = k.Sequential([k.Input(shape=(4, 4, 4)), L.Conv2D(4, 3, padding="same")], name="inner")
    x = k.Input(shape=(4, 4, 4))
    middle = k.Model(x, L.Add()([x, inner(x)]), name="middle")
    return _sequential(
        k, "nested_two_levels", [L.Conv2D(4, 8, strides=8), middle, L.Flatten(), L.Dense(10)]
    )


# --- heads --------------------------------------------------------------------------------------


@register("head")
def head_sigmoid_one_unit(k: ModuleType) -> Any:
    """A binary head: GAP → Dense(1, sigmoid), output (N, 1)."""
    x = _input(k)
    h = k.layers.GlobalAveragePooling2D()(_stem(k, x))
    return k.Model(x, k.layers.Dense(1, activation="sigmoid")(h), name="head_sigmoid_one_unit")


@register("head")
def fully_conv_image_output(k: ModuleType) -> Any:
    """A fully convolutional model returning a 16×16×2 map (conv stride 4 with a fused relu, then
    a Conv2DTranspose stride 2 'same' with a fused sigmoid): no Flatten, output in NHWC."""
    x = _input(k)
    h = k.layers.Conv2D(4, 4, strides=4, activation="relu")(x)
    out = k.layers.Conv2DTranspose(2, 3, strides=2, padding="same", activation="sigmoid")(h)
    return k.Model(x, out, name="fully_conv_image_output")


# --- unsupported: torch_cnn.from_keras must refuse these by name ---------------------------------


@register("unsupported", supported=False)
def unsupported_lstm(k: ModuleType) -> Any:
    """An LSTM over image rows (Reshape to (32, 96)): a recurrent layer."""
    x = _input(k)
    h = k.layers.LSTM(8)(k.layers.Reshape((32, 96))(x))
    return k.Model(x, k.layers.Dense(10)(h), name="unsupported_lstm")


@register("unsupported", supported=False)
def unsupported_lambda(k: ModuleType) -> Any:
    """A Lambda layer (Python bytecode in the file; Keras loads it only with safe_mode=False)."""
    # Compiled under a fixed file name: the marshalled code Keras stores holds no checkout path
    # or line number, so the files are the same wherever and however zoo.py is laid out.
    fn = eval(compile("lambda t: t * 2.0 - 1.0", "<keras_ref.zoo>", "eval"))
    x = _input(k)
    h = k.layers.Lambda(fn)(x)
    return k.Model(x, _head(k, _stem(k, h)), name="unsupported_lambda")


def _channel_scale_class(k: ModuleType) -> Any:
    """A custom layer registered as "torch_cnn_zoo>ChannelScale" (one class per Keras module)."""
    key = f"ChannelScale_{k.__name__}"
    if key in _CUSTOM_CLASSES:
        return _CUSTOM_CLASSES[key]

    @k.saving.register_keras_serializable(package="torch_cnn_zoo")
    class ChannelScale(k.layers.Layer):  # type: ignore[misc, name-defined]
        def build(self, input_shape: Any) -> None:
            self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

        def call(self, inputs: Any) -> Any:
            return inputs * self.scale

    _CUSTOM_CLASSES[key] = ChannelScale
    return ChannelScale


_CUSTOM_CLASSES: dict[str, Any] = {}


@register("unsupported", supported=False)
def unsupported_custom_layer(k: ModuleType) -> Any:
    """A custom registered layer class (torch_cnn_zoo>ChannelScale) the converter cannot know."""
    x = _input(k)
    h = _channel_scale_class(k)()(_stem(k, x))
    return k.Model(x, _head(k, h), name="unsupported_custom_layer")


@register("unsupported", supported=False)
def unsupported_two_inputs(k: ModuleType) -> Any:
    """Two image inputs concatenated: the converter takes one input."""
    a, b = _input(k), _input(k)
    h = k.layers.Concatenate()([_stem(k, a), _stem(k, b)])
    return k.Model([a, b], _head(k, h), name="unsupported_two_inputs")


@register("unsupported", supported=False)
def unsupported_two_outputs(k: ModuleType) -> Any:
    """Two heads (logits and a sigmoid unit): the converter returns one output."""
    x = _input(k)
    h = k.layers.Flatten()(_stem(k, x))
    out = [k.layers.Dense(10)(h), k.layers.Dense(1, activation="sigmoid")(h)]
    return k.Model(x, out, name="unsupported_two_outputs")
