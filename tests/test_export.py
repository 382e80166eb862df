"""Seed and converted models leave torch the standard ways: ``torch.export``, ONNX (checked in
onnxruntime), ``torch.jit.trace`` and ``torch.compile``, computing what the eager model does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import torch_cnn

ZOO = Path(__file__).resolve().parents[1] / "parity_tests" / "zoo"
CONVERTED = ("residual_bn", "hard_swish_ops", "upsampling_nearest_bilinear", "nested_two_levels",
             "conv_same_even_kernel_stride2", "avgpool_same_excludes_padding")  # fmt: skip
MODELS = [f"seed:{n}" for n in torch_cnn.list_models()] + [f"zoo:{n}" for n in CONVERTED]


def build(spec: str) -> torch.nn.Module:
    kind, name = spec.split(":")
    if kind == "seed":
        return torch_cnn.create_model(name).eval()
    return torch_cnn.from_keras(ZOO / name / "model.keras").eval()


def images(n: int = 3) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("spec", MODELS)
def test_torch_export(spec: str) -> None:
    model, x = build(spec), images()
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.equal(program.module()(x), model(x))


@pytest.mark.parametrize("spec", MODELS)
def test_onnx_export_runs_in_onnxruntime(spec: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, x = build(spec), images()
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), path, dynamo=True, verbose=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert out.shape == expected.shape
    assert float(np.abs(out - expected).max()) <= 1e-5


@pytest.mark.parametrize("spec", MODELS)
def test_jit_trace_passes_its_own_check(spec: str) -> None:
    """``torch.jit.trace`` (deprecated by torch, still used) traces one path and checks it."""
    model, x = build(spec), images()
    traced = torch.jit.trace(model, x)  # check_trace=True: a second trace must agree
    with torch.no_grad():
        assert torch.equal(traced(images(5)), model(images(5)))


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["seed:model_cifar10", "zoo:residual_bn"])
def test_torch_compile_matches_eager(spec: str) -> None:
    model, x = build(spec), images(8)
    compiled = torch.compile(model)
    with torch.no_grad():
        assert float((compiled(x) - model(x)).abs().max()) <= 1e-5
