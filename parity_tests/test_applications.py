"""Real architectures users try first: ``keras.applications`` models convert from ``.keras``.

Built with ``weights=None`` and random BatchNorm statistics (``keras_ref.zoo.applications_model``,
32×32×3 inputs, 10 classes), saved by Keras, converted by torch_cnn from the file, and run on
the real CIFAR-10 test images: the output within 1e-4 of its own scale (deep nets add up
float32 rounding over a hundred layers) and the same top-1 class on every image.
ConvNeXt, whose blocks use a custom ``LayerScale`` class, is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from torch_cnn.parity import call_keras, graph_final

pytestmark = [pytest.mark.keras, pytest.mark.slow]

CONVERTED = ("MobileNetV2", "EfficientNetB0", "MobileNetV3Small", "VGG16")
RELATIVE_BAR = 1e-4
N_IMAGES = 256


@pytest.mark.parametrize("name", CONVERTED)
def test_application_converts_from_keras_file(
    keras: ModuleType, real_test_images: torch.Tensor, tmp_path: Path, name: str
) -> None:
    from keras_ref import zoo

    keras_model = zoo.applications_model(name, "float32")
    path = tmp_path / f"{name}.keras"
    keras_model.save(path)
    model = torch_cnn.from_keras(path)
    x = real_test_images[:N_IMAGES].to(torch.float32)
    ours = graph_final(model, x)  # type: ignore[arg-type]
    theirs = np.asarray(call_keras(keras_model, x.permute(0, 2, 3, 1).numpy()))
    scale = float(np.abs(theirs).max())
    rel = float(np.abs(ours - theirs).max()) / scale
    agree = float(np.mean(ours.argmax(-1) == theirs.argmax(-1)))
    print(f"{name}: {len(model.nodes)} nodes, max |Δ| / scale {rel:.2e}, top-1 {agree:.4f}")
    assert rel <= RELATIVE_BAR
    assert agree == 1.0


def test_convnext_is_refused_naming_its_custom_layer(keras: ModuleType, tmp_path: Path) -> None:
    from keras_ref import zoo

    path = tmp_path / "convnext.keras"
    zoo.applications_model("ConvNeXtTiny", "float32").save(path)
    with pytest.raises(torch_cnn.ConversionError, match="LayerScale") as info:
        torch_cnn.from_keras(path)
    assert "register_keras_layer" in str(info.value)
