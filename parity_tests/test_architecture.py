"""Per-layer output shapes and parameter counts: torch against Keras, both against the seeds."""

from __future__ import annotations

from types import ModuleType

import pytest

import torch_cnn
from parity_tests.helpers import SEED_LAYERS, SEED_TOTALS, keras_summary_rows
from torch_cnn.summary import summarize


def torch_layers(name: str) -> list[tuple[str, tuple[int, ...], int]]:
    model = torch_cnn.create_model(name)
    assert isinstance(model, torch_cnn.models.KerasStyleNet)
    shapes = model.output_shapes()
    rows = []
    for info, module in model.keras_layers():
        s = shapes[info.module]
        keras_shape = (*s[1:], s[0]) if len(s) == 3 else s  # (C, H, W) → (H, W, C)
        rows.append((info.keras_class, keras_shape, sum(p.numel() for p in module.parameters())))
    return rows


def keras_layers(keras_ref: ModuleType, name: str) -> list[tuple[str, tuple[int, ...], int]]:
    model = keras_ref.build_model(name)
    return [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params())
        for layer in model.layers
        if type(layer).__name__ != "InputLayer"
    ]


@pytest.mark.parametrize("name", sorted(SEED_LAYERS))
def test_torch_layers_match_seed(name: str) -> None:
    assert torch_layers(name) == SEED_LAYERS[name]


@pytest.mark.parametrize("name", sorted(SEED_LAYERS))
def test_torch_total_params_match_seed(name: str) -> None:
    model = torch_cnn.create_model(name)
    assert sum(p.numel() for p in model.parameters()) == SEED_TOTALS[name]


@pytest.mark.parametrize("name", sorted(SEED_LAYERS))
def test_keras_layers_match_seed(keras_ref: ModuleType, name: str) -> None:
    assert keras_layers(keras_ref, name) == SEED_LAYERS[name]
    assert keras_ref.build_model(name).count_params() == SEED_TOTALS[name]


@pytest.mark.parametrize("name", sorted(SEED_LAYERS))
def test_torch_layers_match_keras(keras_ref: ModuleType, name: str) -> None:
    assert torch_layers(name) == keras_layers(keras_ref, name)


def test_registry_covers_the_seeds() -> None:
    assert torch_cnn.list_models() == sorted(SEED_LAYERS)


@pytest.mark.parametrize("name", sorted(SEED_LAYERS))
def test_summary_rows_line_up_with_keras(keras_ref: ModuleType, name: str) -> None:
    """Our summary's rows are Keras's (a functional model's InputLayer included): names aside
    (the torch modules have their own), the same classes, shapes, counts and totals."""
    lines: list[str] = []
    keras_ref.build_model(name).summary(print_fn=lambda s, **_: lines.append(s))
    keras_text = "\n".join(lines)
    keras_rows = [(cls, shape, params) for _, cls, shape, params in keras_summary_rows(keras_text)]
    ours = summarize(torch_cnn.create_model(name))
    our_rows = [(r.class_name, r.output_shape, f"{r.params:,}") for r in ours.rows]
    assert our_rows == keras_rows
    functional = keras_rows[0][0] == "InputLayer"
    assert len(our_rows) == len(SEED_LAYERS[name]) + functional
    assert functional == (name == "model_cnn")  # seed 000 is functional, seed 001 Sequential
    total = next(r for r in keras_text.splitlines() if "Total params" in r).strip()
    assert f"Total params: {SEED_TOTALS[name]:,}" in total
    assert total in torch_cnn.summary(torch_cnn.create_model(name))
