"""The examples run as a user runs them, and the docs say what the code does.

Each example runs in a fresh process at the repository root, on the ``../shared`` sample
(``CIFAR10_DIR``) in its fast mode (``--epochs 1``, ``--max-images``, ``--samples``); the tests
assert on what it prints and on the files it writes, reading them back with torch_cnn.
Examples that need Keras are run by tests that request the ``keras`` fixture (they fail in
CI without it); trainings are marked ``slow``. The last tests hold the docs to the code: the
converter page's supported-layer table is what the registry builds, the README names every
supported layer, and every relative link in the README and ``docs/`` resolves.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from tests.helpers import ROOT, run_python

EXAMPLES = ROOT / "examples"
ZOO_FILE = ROOT / "parity_tests" / "zoo" / "residual_bn" / "model.keras"  # 32×32 RGB, 10 classes
SEED_FILE = ROOT / "parity_tests" / "files" / "model_cnn.keras"
RUN_FILES = {"history.json", "metrics.json", "curves.png", "confusion.png", "model.safetensors",
             "last.pt"}  # fmt: skip
FLOAT32_BAR = 1e-5


def example(name: str, *args: str | Path, data_dir: Path | None = None) -> str:
    """Run ``examples/NAME.py ARGS``; its stdout, after asserting it exited with status 0."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if data_dir is not None:
        env["CIFAR10_DIR"] = str(data_dir)
    result = run_python(str(EXAMPLES / f"{name}.py"), *map(str, args), env=env, timeout=600)
    assert result.returncode == 0, f"{name} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result.stdout


def number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Every parameter and buffer equal, but torch's own BatchNorm step counter (Keras has none,
    so a Keras file does not carry it)."""
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------------------------------------
# port_your_keras_cnn.py


def test_port_example_converts_and_saves_a_keras_file(tmp_path: Path, cifar10_dir: Path) -> None:
    out = example("port_your_keras_cnn", "--keras-file", ZOO_FILE, "--no-keras",
                  "--max-images", 16, "--out", tmp_path, data_dir=cifar10_dir)  # fmt: skip
    assert f"converted {ZOO_FILE} into KerasGraph" in out
    assert "Total params: 2,174" in out  # Keras's count for the zoo entry (its summary.txt)
    assert "skipping the comparison" in out
    assert "torch_cnn.load gives the same outputs: True" in out
    same_weights(torch_cnn.load(tmp_path / "model.safetensors"), torch_cnn.from_keras(ZOO_FILE))


@pytest.mark.keras
@pytest.mark.slow
def test_port_example_matches_keras(keras: ModuleType, tmp_path: Path, cifar10_dir: Path) -> None:
    out = example("port_your_keras_cnn", "--max-images", 32, "--out", tmp_path,
                  data_dir=cifar10_dir)  # fmt: skip
    assert "comparing on 32 CIFAR-10 test images" in out
    assert number(r"max \|Δ\| (\S+)", out) <= FLOAT32_BAR
    assert "top-1 agreement 100.00% on 32 images" in out
    assert {p.name for p in tmp_path.iterdir()} == {"my_cnn.keras", "model.safetensors"}
    keras_model = keras.saving.load_model(tmp_path / "my_cnn.keras")
    assert f"Total params: {keras_model.count_params():,} " in out  # the summary is Keras's


# ---------------------------------------------------------------------------------------------
# fine_tune_converted.py


@pytest.mark.slow
def test_fine_tune_example_writes_the_run_and_a_keras_export(
    tmp_path: Path, cifar10_dir: Path
) -> None:
    out = example("fine_tune_converted", "--keras-file", ZOO_FILE, "--epochs", 1,
                  "--max-images", 128, "--no-keras", "--out", tmp_path, data_dir=cifar10_dir)  # fmt: skip
    assert "the file carries no optimizer" in out
    assert re.search(r"test accuracy \d\.\d{4} before, \d\.\d{4} after 1 epoch on 128 images", out)
    assert RUN_FILES | {"fine_tuned.weights.h5"} <= {p.name for p in tmp_path.iterdir()}
    history = json.loads((tmp_path / "history.json").read_text())
    assert [len(v) for v in history.values()] == [1, 1, 1, 1]
    assert json.loads((tmp_path / "metrics.json").read_text())["split"] == "validation"
    tuned = torch_cnn.load(tmp_path / "model.safetensors")
    exported = torch_cnn.load_keras_weights(
        torch_cnn.from_keras(ZOO_FILE), tmp_path / "fine_tuned.weights.h5"
    )
    same_weights(exported, tuned)  # the .weights.h5 holds exactly the fine-tuned weights
    with pytest.raises(AssertionError):
        same_weights(tuned, torch_cnn.from_keras(ZOO_FILE))  # and they did change


@pytest.mark.keras
@pytest.mark.slow
def test_fine_tune_example_continues_the_keras_optimizer(
    keras: ModuleType, tmp_path: Path, cifar10_dir: Path
) -> None:
    out = example("fine_tune_converted", "--epochs", 1, "--max-images", 128, "--out", tmp_path,
                  data_dir=cifar10_dir)  # fmt: skip
    assert "Keras trained keras_trained_cnn for one epoch on 128 images" in out
    assert "optimizer: KerasAdam from the file, continuing after step 4" in out  # 128 / 32
    assert number(r"max \|Δ\| (\S+) against torch on 128", out) <= FLOAT32_BAR


# ---------------------------------------------------------------------------------------------
# train_seed_and_export.py


@pytest.mark.slow
def test_train_seed_example_exports_weights_keras_can_read(
    tmp_path: Path, cifar10_dir: Path
) -> None:
    out = example("train_seed_and_export", "--model", "model_cnn", "--epochs", 1,
                  "--max-images", 256, "--no-keras", "--out", tmp_path, data_dir=cifar10_dir)  # fmt: skip
    assert re.search(r"model_cnn: test accuracy \d\.\d{4}, test loss \d\.\d{4} after 1 of 1 epochs "
                     r"on 256 images", out)  # fmt: skip
    assert RUN_FILES | {"model_cnn.weights.h5"} <= {p.name for p in tmp_path.iterdir()}
    trained = torch_cnn.load(tmp_path / "model.safetensors")
    exported = torch_cnn.load_keras_weights(
        torch_cnn.create_model("model_cnn"), tmp_path / "model_cnn.weights.h5"
    )
    same_weights(exported, trained)


@pytest.mark.keras
@pytest.mark.slow
def test_train_seed_example_loads_in_keras(
    keras: ModuleType, tmp_path: Path, cifar10_dir: Path
) -> None:
    out = example("train_seed_and_export", "--epochs", 1, "--max-images", 128, "--out", tmp_path,
                  data_dir=cifar10_dir)  # fmt: skip
    assert number(r"model_cifar10.weights.h5: max \|Δ\| (\S+),", out) <= FLOAT32_BAR
    assert "top-1 agreement 100.00%" in out
    keras_acc = number(r"test accuracy Keras (\S+),", out)
    assert keras_acc == number(r"torch (\S+)$", out.strip())


# ---------------------------------------------------------------------------------------------
# classify_images.py


@pytest.mark.slow
def test_classify_example_on_cifar_samples(tmp_path: Path, cifar10_dir: Path) -> None:
    out = example("classify_images", SEED_FILE, "--samples", 5, "--top-k", 3, "--out", tmp_path,
                  data_dir=cifar10_dir)  # fmt: skip
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) == 5
    lines = [line for line in out.splitlines() if line.startswith(str(tmp_path))]
    assert len(lines) == 5
    model = torch_cnn.from_keras(SEED_FILE)
    x = torch_cnn.data.to_float(torch_cnn.data.load_test_split(cifar10_dir).images[:5])
    with torch.no_grad():
        probs = model(x)
    classes = torch_cnn.data.read_classes(cifar10_dir)
    for line, p in zip(lines, probs, strict=True):
        shown = re.findall(r"(\w+) (\d\.\d{3})", line.split(": ", 1)[1])
        assert [name for name, _ in shown] == [classes[i] for i in p.topk(3).indices]
        assert [float(v) for _, v in shown] == pytest.approx(p.topk(3).values.tolist(), abs=5e-4)
    truth = [p.stem.split("_", 1)[1] for p in pngs]
    expected = np.mean([classes[int(i)] == t for i, t in zip(probs.argmax(1), truth, strict=True)])
    assert number(r"accuracy (\S+) on 5 images", out) == pytest.approx(expected)


@pytest.mark.slow
def test_classify_example_refuses_another_size_unless_resize(tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "small.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(image)
    args = [str(EXAMPLES / "classify_images.py"), str(SEED_FILE), str(image)]
    refused = run_python(*args)
    assert refused.returncode == 2
    assert "16×16" in refused.stderr and "resize" in refused.stderr
    out = example("classify_images", SEED_FILE, image, "--resize", "--top-k", 1)
    assert re.fullmatch(rf"{re.escape(str(image))}: \w+ \d\.\d{{3}}", out.strip())


# ---------------------------------------------------------------------------------------------
# The docs against the code

DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_supported_layer_table_is_the_registry() -> None:
    generated = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "supported_layers.py")],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout  # fmt: skip
    page = (ROOT / "docs" / "converter.md").read_text(encoding="utf-8")
    assert generated in page, "run `python docs/supported_layers.py --write`"


def test_the_readme_registers_a_layer_as_it_says() -> None:
    """The README's "Register a layer" snippet converts the zoo's custom-layer model, which
    is refused without it, with the file's scale factors in the new module."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Register a layer", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    from torch_cnn.porting.keras_files import read_keras_source

    path = ROOT / "parity_tests" / "zoo" / "unsupported_custom_layer" / "model.keras"
    weights = read_keras_source(path).weights
    assert weights is not None
    (scale,) = weights["channel_scale"]
    printed = re.search(r"tensor\(\[([^\]]+)\]", result.stdout)
    assert printed, result.stdout
    assert [float(v) for v in printed.group(1).split(",")] == pytest.approx(scale, abs=1e-4)
    with pytest.raises(torch_cnn.ConversionError, match="ChannelScale"):
        torch_cnn.from_keras(path)  # not registered in this process


def test_the_readme_names_every_supported_layer() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [c for c in torch_cnn.supported_layers() if not re.search(rf"\b{c}\b", readme)]
    assert not missing, f"README.md does not name {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # no headings inside code blocks
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https: and the like
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"
