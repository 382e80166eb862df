"""The default float32 path (channels_last inside the model) against the plain NCHW path.

Float32 models with wide convolutions compute a batch's maps channels_last by default
(``memory_format="auto"``, ``torch_cnn.models.base.compute_format``): ``model_cifar10`` does,
``model_cnn`` (10 and 20 channels, where channels_last is slower) does not;
``memory_format="channels_last"`` forces it, ``"contiguous"`` is the plain NCHW path. All must
give Keras's function to the parity bar, so here they must agree within it (1e-5 max |Δ| on
every layer; the parity suite checks the default against Keras itself), take inputs in any
layout, return what users expect, train alike and still export.
"""

from __future__ import annotations

import copy
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_cnn
from torch_cnn.models import KerasGraph
from torch_cnn.models.base import MEMORY_FORMATS, compute_format, wide_convolutions
from torch_cnn.parity import FLOAT32_ATOL
from torch_cnn.train import seeded_model

NAMES = torch_cnn.list_models()
CL = torch.channels_last
# The channels_last settings: the default ("auto") and forced, each against plain NCHW.
FAST = ["auto", "channels_last"]


def _images(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64).to(dtype)


def _pair(model: nn.Module, memory_format: str = "auto") -> tuple[nn.Module, nn.Module]:
    """The model with ``memory_format`` (the default: "auto") and a copy on the plain NCHW path."""
    model.memory_format = memory_format
    plain = copy.deepcopy(model)
    plain.memory_format = "contiguous"
    return model, plain


def _conv_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The input of every convolution during ``model(x)``: the layout the model computes in."""
    seen: list[torch.Tensor] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_compute_format_policy() -> None:
    x = torch.zeros(2, 3, 8, 8)
    assert MEMORY_FORMATS == ("auto", "channels_last", "contiguous")
    assert compute_format("auto", x) == CL
    assert compute_format("auto", x.to(torch.bfloat16)) == CL
    assert compute_format("auto", x.double()) == torch.contiguous_format  # the 1e-12 checks' dtype
    assert compute_format("auto", torch.zeros(2, 8)) == torch.contiguous_format  # not a map
    assert compute_format("auto", x.to("meta")) == torch.contiguous_format
    assert compute_format("auto", x[:1]) == torch.contiguous_format  # one image
    assert compute_format("auto", x, wide=False) == torch.contiguous_format  # narrow convs
    assert compute_format("channels_last", x.double()) == CL
    assert compute_format("channels_last", x[:1]) == CL
    assert compute_format("contiguous", x) == torch.contiguous_format
    assert wide_convolutions(seeded_model("model_cifar10", 0))  # 32, 64, 128 channels
    assert not wide_convolutions(seeded_model("model_cnn", 0))  # 10, 20
    assert not wide_convolutions(nn.Linear(3, 4))  # no convolution at all


@pytest.mark.parametrize("name", NAMES)
def test_what_the_default_computes_in_and_the_switches(name: str) -> None:
    """Not only equal outputs: the default really is channels_last inside where it pays
    (model_cifar10, a batch), plain NCHW where it does not (one image, model_cnn's narrow
    convolutions, float64), and the switches force either (else the comparisons below could
    compare a path with itself)."""
    model = seeded_model(name, 0).eval()
    assert model.memory_format == "auto"
    wide = name == "model_cifar10"
    for batch, channels_last in ((4, wide), (1, False)):
        for t in _conv_inputs(model, _images(batch)):
            assert t.is_contiguous(memory_format=CL) == channels_last
            assert t.is_contiguous() == (not channels_last)
    forced, plain = _pair(copy.deepcopy(model), "channels_last")
    assert all(t.is_contiguous(memory_format=CL) for t in _conv_inputs(forced, _images(1)))
    assert all(t.is_contiguous() for t in _conv_inputs(plain, _images(4)))
    for t in _conv_inputs(seeded_model(name, 0, dtype=torch.float64), _images(4).double()):
        assert t.is_contiguous()  # float64 stays NCHW by default
    with pytest.raises(ValueError, match=r"memory_format must be one of .*Received: 'nhwc'"):
        model.memory_format = "nhwc"  # type: ignore[assignment]


@pytest.mark.parametrize("memory_format", FAST)
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("name", NAMES)
def test_default_equals_plain_nchw_on_every_layer(
    name: str, batch: int, memory_format: str
) -> None:
    model, plain = _pair(seeded_model(name, 0).eval(), memory_format)
    x = _images(batch, seed=batch)
    with torch.no_grad():
        got, want = model.layer_outputs(x), plain.layer_outputs(x)
        assert list(got) == list(want)
        for layer in got:
            assert got[layer].shape == want[layer].shape, layer
            delta = (got[layer] - want[layer]).abs().max().item()
            assert delta <= FLOAT32_ATOL, f"{name} {layer}: max |Δ| {delta:.2e}"
        assert torch.equal(model(x).argmax(1), plain(x).argmax(1))
        assert (model.logits(x) - plain.logits(x)).abs().max().item() <= FLOAT32_ATOL


def test_a_flatten_in_memory_order_is_caught() -> None:
    """The check above can fail: a Flatten that reads a channels_last map in memory order
    (Keras's (H, W, C) instead of torch's (C, H, W), what the Dense kernel rows expect) is
    far off the plain path."""
    model, plain = _pair(seeded_model("model_cifar10", 0).eval())

    class MemoryOrderFlatten(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.permute(0, 2, 3, 1).reshape(len(x), -1)  # a view of channels_last memory

    model.flatten = MemoryOrderFlatten()
    x = _images(16)
    with torch.no_grad():
        assert (model(x) - plain(x)).abs().max().item() > 100 * FLOAT32_ATOL


@pytest.mark.parametrize("name", NAMES)
def test_output_layout_and_dtype(name: str) -> None:
    model = seeded_model(name, 0).eval()
    with torch.no_grad():
        y = model(_images(5))
    assert y.shape == (5, 10) and y.dtype == torch.float32 and y.is_contiguous()
    assert y.device.type == "cpu"


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS)
@pytest.mark.parametrize("name", NAMES)
def test_channels_last_and_non_contiguous_inputs(name: str, memory_format: str) -> None:
    """Whatever the input's strides: channels_last, a crop of a bigger batch, every other image
    of a batch, a transposed-back view: the same outputs as a plain contiguous input, in
    every setting."""
    model = seeded_model(name, 0).eval()
    model.memory_format = memory_format
    x = _images(8)
    big = _images(16, seed=1)
    big[::2] = x
    padded = F.pad(x, (1, 1, 2, 0))
    inputs = {
        "channels_last": x.contiguous(memory_format=CL),
        "every other": big[::2],
        "crop": padded[:, :, 2:, 1:-1],
        "transposed back": x.transpose(2, 3).contiguous().transpose(2, 3),
    }
    with torch.no_grad():
        want = model(x)
        for what, xi in inputs.items():
            assert torch.equal(xi, x), what
            assert torch.equal(model(xi), want), what


@pytest.mark.parametrize("memory_format", FAST)
@pytest.mark.parametrize("name", NAMES)
def test_training_gradients_match_the_plain_path(name: str, memory_format: str) -> None:
    """Train mode with autograd (max-pooling with indices in channels_last, the conv backward
    in channels_last): the loss and every gradient as on the plain path (float32, relative to
    each gradient's scale), and float64, which "auto" keeps NCHW, bit for bit."""
    for dtype, rel in ((torch.float32, 1e-5), (torch.float64, 0.0)):
        model, plain = _pair(seeded_model(name, 0, dtype=dtype).train(), memory_format)
        x, y = _images(16, dtype=dtype), torch.arange(16) % 10
        if dtype == torch.float64 and memory_format == "channels_last":
            rel = 1e-12  # forced channels_last: float64 too, another order of the same sums
        losses = []
        for m in (model, plain):
            loss = F.cross_entropy(m.logits(x), y)
            loss.backward()
            losses.append(loss.item())
        assert abs(losses[0] - losses[1]) <= rel * abs(losses[1])
        for (pname, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
            assert p.grad is not None and q.grad is not None
            scale = q.grad.abs().max().item()
            delta = (p.grad - q.grad).abs().max().item()
            assert delta <= rel * scale, f"{name} {dtype} {pname}: {delta:.2e} of {scale:.2e}"
            assert p.grad.is_contiguous(), pname  # parameters keep their layout


def test_eval_and_train_modes_give_the_same_forward() -> None:
    """No dropout or BatchNorm in the seeds: train mode computes the same values (with grad)."""
    model = seeded_model("model_cifar10", 0)
    x = _images(6)
    with torch.no_grad():
        evaluated = model.eval()(x)
    trained = model.train()(x)
    assert trained.requires_grad
    assert (trained.detach() - evaluated).abs().max().item() <= FLOAT32_ATOL


@pytest.mark.parametrize("name", NAMES)
def test_torch_export_still_traces_the_default_path(name: str) -> None:
    model = seeded_model(name, 0).eval()
    x = _images(4)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), model(x))
    ops = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    converts = any("clone" in op or "contiguous" in op or "_to_copy" in op for op in ops)
    assert converts == (name == "model_cifar10"), ops  # the layout change is in the graph


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_and_parameters_keep_their_layout(name: str) -> None:
    """The layout is a computation detail: a forward pass changes no parameter's strides, and
    the state dict round-trips between the two paths."""
    model, plain = _pair(seeded_model(name, 0), "channels_last")
    with torch.no_grad():
        model(_images(2))
    assert all(p.is_contiguous() for p in model.parameters())
    plain.load_state_dict(model.state_dict())
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), plain.parameters(), strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Converted models (from_keras): the same default, with Keras's BatchNorm, Add, global pooling


def _converted(keras: ModuleType, entry: str) -> KerasGraph:
    from benchmarks.converted import build_keras
    from keras_ref import zoo

    if entry == "resnet_bn":  # the benchmark's: 16-64 channels, wide enough for channels_last
        keras_model = build_keras(keras, entry, seed=0)
    else:
        keras_model = zoo.build(entry, keras_module=keras)
        zoo.seed_weights(keras_model, 0)
    model = torch_cnn.from_keras(keras_model)
    assert isinstance(model, KerasGraph)
    return model


CONVERTED = [
    "resnet_bn",
    "residual_bn",
    "fully_conv_image_output",
    "maxpool_same_and_strides",
    "concat_axes",
]


@pytest.mark.keras
@pytest.mark.parametrize("memory_format", FAST)
@pytest.mark.parametrize("entry", CONVERTED)
def test_converted_default_equals_plain_nchw(
    keras: ModuleType, entry: str, memory_format: str
) -> None:
    model, plain = _pair(_converted(keras, entry).eval(), memory_format)
    x = _images(8)
    channels_last = memory_format == "channels_last" or entry == "resnet_bn"
    assert _conv_inputs(model, x)[0].is_contiguous(memory_format=CL) == channels_last
    with torch.no_grad():
        got, want = model.layer_outputs(x), plain.layer_outputs(x)
        for layer in want:
            delta = (got[layer] - want[layer]).abs().max().item()
            assert delta <= FLOAT32_ATOL, f"{entry} {layer}: max |Δ| {delta:.2e}"
        y = model(x)
    # What a user gets back: the plain path's layout (an image output NCHW-contiguous).
    assert y.shape == want[list(want)[-1]].shape and y.dtype == torch.float32
    assert y.is_contiguous()


@pytest.mark.keras
def test_converted_batchnorm_trains_alike(keras: ModuleType) -> None:
    """Train mode: BatchNorm's batch statistics and running averages, and the gradients, as on
    the plain path."""
    model, plain = _pair(_converted(keras, "residual_bn").train(), "channels_last")
    x = _images(16)
    for m in (model, plain):
        m(x).log().mean().backward()
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
        if a.is_floating_point():
            assert (a - b).abs().max().item() <= FLOAT32_ATOL, name
    for (name, p), q in zip(model.named_parameters(), plain.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert (p.grad - q.grad).abs().max().item() <= 1e-5 * q.grad.abs().max().item(), name


@pytest.mark.keras
def test_converted_model_exports(keras: ModuleType) -> None:
    model = _converted(keras, "residual_bn").eval()
    x = _images(3)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), model(x))
