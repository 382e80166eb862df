"""A damaged ``last.pt`` is refused before it touches the run: the caller's model and optimizer
stay as they were (issue 16: resume overwrote the model before raising)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import assert_same
from torch_cnn.train import (
    CHECKPOINT_NAME,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    seeded_model,
)
from torch_cnn.weights import CheckpointError

DATA = (
    torch.rand(40, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
    torch.arange(40) % 10,
)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    fit(seeded_model("model_cnn", 0), DATA, epochs=1, batch_size=8, device="cpu",
        progress=False, checkpoint_dir=tmp_path)  # fmt: skip
    return tmp_path


def _damage(run: Path, change: Any) -> None:
    ckpt = load_checkpoint(run / CHECKPOINT_NAME)
    change(ckpt)
    torch.save(ckpt, run / CHECKPOINT_NAME)


DAMAGES = {
    "a tensor of the wrong shape": lambda c: c["model"].__setitem__("fc.weight", torch.zeros(3, 3)),
    "integer weights (would be cast)": lambda c: c["model"].__setitem__(
        "fc.bias", c["model"]["fc.bias"].to(torch.int64)
    ),
    "a missing tensor": lambda c: c["model"].pop("conv1.bias"),
    "an optimizer state for other parameters": lambda c: c["optimizer"]["param_groups"][
        0
    ].__setitem__("params", [0]),
    "a generator state that is not one": lambda c: c["rng"].__setitem__(
        "generator", torch.zeros(3, dtype=torch.uint8)
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_checkpoint_leaves_the_model_and_optimizer_unchanged(
    checkpoint: Path, damage: str
) -> None:
    _damage(checkpoint, DAMAGES[damage])
    model = seeded_model("model_cnn", 7)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"cannot resume|do not fit|nothing was loaded"):
        fit(model, DATA, epochs=2, batch_size=8, device="cpu", progress=False,
            checkpoint_dir=checkpoint, resume=True)  # fmt: skip
    assert_same(model.state_dict(), before, "model")


def test_model_from_a_checkpoint_refuses_integer_weights(checkpoint: Path) -> None:
    _damage(checkpoint, DAMAGES["integer weights (would be cast)"])
    with pytest.raises(CheckpointError, match=r"fc\.bias"):
        model_from_checkpoint(checkpoint / CHECKPOINT_NAME)
