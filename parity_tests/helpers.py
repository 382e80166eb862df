"""Shared helpers for the parity suite (the Keras-side pieces live in ``keras_ref``)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch

import torch_cnn

MODEL_NAMES = torch_cnn.list_models()
DTYPES = {"float32": torch.float32, "float64": torch.float64}
# The seeds' numbers (the notebooks' summaries), stated once: the tests import them from here.
SEED_LAYERS = {
    "model_cnn": [
        ("Conv2D", (16, 16, 10), 490),
        ("Conv2D", (8, 8, 20), 1_820),
        ("Flatten", (1280,), 0),
        ("Dense", (10,), 12_810),
    ],
    "model_cifar10": [
        ("Conv2D", (30, 30, 32), 896),
        ("MaxPooling2D", (15, 15, 32), 0),
        ("Conv2D", (13, 13, 64), 18_496),
        ("MaxPooling2D", (6, 6, 64), 0),
        ("Conv2D", (4, 4, 128), 73_856),
        ("Flatten", (2048,), 0),
        ("Dense", (64,), 131_136),
        ("Dense", (10,), 650),
    ],
}
SEED_TOTALS = {"model_cnn": 15_120, "model_cifar10": 225_034}


def build_seeded_pair(
    keras: ModuleType, name: str, dtype: str, seed: int = 0
) -> tuple[Any, torch_cnn.models.KerasStyleNet]:
    """``keras_ref.side_by_side.build_seeded_pair``, imported when called: test modules must
    load where Keras is not installed (``keras`` is the fixture that proves it is)."""
    from keras_ref.side_by_side import build_seeded_pair as build

    return build(name, dtype, seed)


def random_images(n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Seeded uniform [0, 1) images, NCHW, made on the CPU (so every device sees the same bits)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=g, dtype=torch.float64).to(dtype)


def keras_summary_rows(text: str) -> list[tuple[str, str, str, str]]:
    """``(name, class, output shape, params)`` of each row of Keras's printed ``summary()``.

    Keras draws a rich table; a long cell wraps onto the row's next lines, so the lines
    between two rules are joined column by column first.
    """
    if "┃" not in text:
        return _keras2_summary_rows(text)
    rows: list[tuple[str, str, str, str]] = []
    cells: list[str] = []
    body = False
    for line in text.splitlines():
        if line.startswith(("┡", "├", "└")):
            body = True
            if cells:
                rows.append(_summary_row(cells))
            cells = []
            continue
        if not (body and line.startswith("│")):
            continue
        parts = [c.strip() for c in line.strip().strip("│").split("│")]
        cells = (
            parts if not cells else [f"{a} {b}".strip() for a, b in zip(cells, parts, strict=False)]
        )
    return rows


def _summary_row(cells: list[str]) -> tuple[str, str, str, str]:
    label = cells[0]
    name, _, cls = label.rpartition(" (")
    return name.strip(), cls.rstrip(")"), cells[1], cells[2]


def _keras2_summary_rows(text: str) -> list[tuple[str, str, str, str]]:
    """Keras 2's (tf_keras) plain-text table: columns at the header's offsets. A long label
    wraps mid-word onto the next line; an expanded nested model is boxed in ``|``; an
    InputLayer's shape is printed as a list and counts without commas (both normalised)."""
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if "Layer (type)" in line)
    shape_at, params_at = lines[head].index("Output Shape"), lines[head].index("Param #")
    rows: list[tuple[str, str, str, str]] = []
    for line in lines[head + 2 :]:
        if line.startswith("=") or line.startswith("Total params"):
            break
        if "¯" in line:
            continue
        body = line.replace("|", " ")  # a nested model's box keeps the columns
        label = body[:shape_at].strip()
        rest = body[shape_at:].split()
        if not label:
            continue
        if not rest and rows:  # a wrapped label: "batch_normalization (BatchN" + "ormalization)"
            name, cls, shape, params = rows[-1]
            joined = f"{name} ({cls}{label}"
            n, _, c = joined.rpartition(" (")
            rows[-1] = (n, c.rstrip(")"), shape, params)
            continue
        shape = body[shape_at:params_at].strip()
        if shape.startswith("[(") and shape.endswith(")]"):
            shape = shape[1:-1]
        params = f"{int(body[params_at:].split()[0]):,}"
        name, _, cls = label.rpartition(" (")
        rows.append((name.strip(), cls.rstrip(")"), shape, params))
    return rows
