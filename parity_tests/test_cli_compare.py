"""``torch-cnn compare`` and ``parity`` against Keras, layer by layer, with an exit status; and
``predict`` and its resizing against Keras and TensorFlow."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import torch_cnn
from parity_tests.helpers import build_seeded_pair
from tests.helpers import ROOT, run_python
from torch_cnn import data, porting
from torch_cnn.cli import compare, main
from torch_cnn.cli.common import TF_LOG_LINE
from torch_cnn.predict import predict, read_images

ZOO = ROOT / "parity_tests" / "zoo"
pytestmark = pytest.mark.keras


@pytest.fixture(scope="module")
def keras_file(keras: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keras_model, _ = build_seeded_pair(keras, "model_cifar10", "float32", seed=3)
    path = tmp_path_factory.mktemp("compare") / "model.keras"
    keras_model.save(path)
    return path


def _rows(out: str) -> dict[str, tuple[float, str]]:
    """Keras layer → (max |Δ|, status), from compare's table."""
    row = re.compile(r"^(\S+ \(\w+\)|output)\s.*?\s([\d.e+-]+)\s+[\d.e+-]+\s+(ok|FAIL)$")
    return {m[1]: (float(m[2]), m[3]) for line in out.splitlines() if (m := row.match(line))}


def _test_images(cifar10_dir: Path) -> int:
    return len(data.load_cifar10(cifar10_dir, download=False).test)


CASES = [
    ("residual_bn", "model.keras", []),
    ("nested_sequential_in_functional", "model.h5", []),
    ("seed_like_cnn", "model_dir", []),
    ("keras2_residual_bn", "model.h5", []),
    ("seed_like_cnn", "model_sharded.weights.json", ["--model", "{zoo}/seed_like_cnn/model.keras"]),
    ("residual_bn", "model.weights.h5", ["--model", "{converted}"]),
    ("keras2_residual_bn", "weights.h5", ["--model", "{zoo}/residual_bn/model.keras"]),
    ("inception_branch_concat", "model.keras", ["--dtype", "float64"]),
    ("normalization_given_and_adapted", "model.keras", ["--dtype", "float64"]),
]


@pytest.mark.parametrize(("entry", "file", "extra"), CASES, ids=[f"{e}/{f}" for e, f, _ in CASES])
def test_compare_zoo_files_on_every_test_image(
    entry: str,
    file: str,
    extra: list[str],
    converted: Path,
    cifar10_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every layer within the bar (1e-5 float32, 1e-12 float64) on all the real test images
    (CIFAR10_DIR, the default); weights-only files with --model."""
    extra = [a.format(zoo=ZOO, converted=converted) for a in extra]
    assert main(["compare", str(ZOO / entry / file), *extra]) == 0
    out = capsys.readouterr().out
    n = _test_images(cifar10_dir)
    assert f"on {n:,} CIFAR-10 test images from {cifar10_dir}" in out
    rows = _rows(out)
    names = [str(x) for x in np.load(ZOO / entry / "expected.npz")["layer_names"]]
    top = [name for name in names if "/" not in name]  # nested models' own layers are not rows
    assert len(rows) == len(top) + 1 and {s for _, s in rows.values()} == {"ok"}, out
    bar = 1e-12 if "float64" in extra else 1e-5
    assert max(d for d, _ in rows.values()) <= bar and "top-1 agreement: 1.0000   PASS" in out


def test_float64_compare_runs_keras_in_float64(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without rebuilding the Keras model in float64 its layers compute in float32: the 1e-12
    bar catches that (a saved model keeps its float32 dtype policies)."""
    path = str(ZOO / "residual_bn" / "model.keras")
    monkeypatch.setattr(compare, "keras_in_dtype", lambda keras, model, dtype: model)
    assert main(["compare", path, "--dtype", "float64", "-n", "32"]) == 1
    worst = max(d for d, _ in _rows(capsys.readouterr().out).values())
    assert 1e-9 < worst < 1e-4


@pytest.mark.parametrize("fmt", [".keras", ".h5", ".weights.h5"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_compare_seed_model_every_format_and_dtype(
    keras_file: Path, tmp_path: Path, fmt: str, dtype: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import keras

    path = keras_file
    if fmt != ".keras":
        path = tmp_path / f"model{fmt}"
        loaded = keras.saving.load_model(keras_file, compile=False)
        (loaded.save_weights if fmt == ".weights.h5" else loaded.save)(path)
    model_args = ["--model", "model_cifar10"] if fmt == ".weights.h5" else []
    assert main(["compare", str(path), "-n", "64", "--dtype", dtype, *model_args]) == 0
    out = capsys.readouterr().out
    assert "model_cifar10 (seed model: 8 layers, 225,034 parameters" in out
    rows = _rows(out)
    assert len(rows) == 8 and {s for _, s in rows.values()} == {"ok"}, out


def test_compare_fails_on_a_bad_port(
    keras_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(porting.KERNEL_TO_TORCH, "Dense", lambda k, chw: k.T)  # no permutation
    assert main(["compare", str(keras_file), "-n", "16"]) == 1
    out = capsys.readouterr().out
    statuses = [s for _, s in _rows(out).values()]
    # Everything before the first Dense agrees; from it on, every layer is off.
    assert statuses[:6] == ["ok"] * 6 and statuses[6:] == ["FAIL", "FAIL"], out
    assert "FAIL" in out.splitlines()[-1]


def test_compare_without_data_uses_seeded_random_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setenv("TORCH_CNN_CACHE", str(tmp_path / "empty-cache"))
    assert main(["compare", str(ZOO / "residual_bn" / "model.keras")]) == 0
    captured = capsys.readouterr()
    assert "note: no CIFAR-10 data found (set CIFAR10_DIR or --data-dir); using 256" in captured.err
    assert "on 256 seeded random images (seed 0)" in captured.out
    assert not (tmp_path / "empty-cache").exists()  # never a download


def test_compare_a_model_of_another_input_shape(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """16×16 inputs: random images of that shape, with a note, even with the data there."""
    L = keras.layers
    x = keras.Input((16, 16, 3))
    y = L.Dense(4, activation="softmax")(L.GlobalAveragePooling2D()(L.Conv2D(6, 3)(x)))
    path = tmp_path / "small.keras"
    keras.Model(x, y).save(path)
    assert main(["compare", str(path), "-n", "40", "--data-dir", str(cifar10_dir)]) == 0
    captured = capsys.readouterr()
    assert "the model takes inputs (N, 3, 16, 16), not CIFAR-10's" in captured.err
    assert "on 40 seeded random images" in captured.out and captured.out.count(" ok") == 4


def test_compare_errors(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ([str(ZOO / "residual_bn" / "model.weights.h5")], 2, "give the architecture with --model"),
        ([str(ZOO / "keras2_residual_bn" / "weights.h5")], 2, "give the architecture with"),
        ([str(converted)], 2, "expected a Keras file"),
        ([str(tmp_path / "gone.keras")], 2, "gone.keras: no such file"),
        ([str(ZOO / "residual_bn" / "model.keras"), "--data-dir", str(tmp_path)], 2,
         f"CIFAR-10 directory {tmp_path} lacks data_batch_1"),
        ([str(ZOO / "hard_swish_ops" / "model.h5")], 1, "cannot load"),  # Keras cannot
    ]  # fmt: skip
    for argv, status, needle in cases:
        assert main(["compare", *argv]) == status, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err


def test_parity_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["parity", "--model", "model_cnn", "-n", "32"]) == 0
    out = capsys.readouterr().out
    assert "on 32 CIFAR-10 test images" in out and out.count("PASS") == 1
    monkeypatch.setitem(porting.KERNEL_TO_TORCH, "Dense", lambda k, chw: k.T)
    assert main(["parity", "--model", "model_cnn", "-n", "32"]) == 1


@pytest.mark.slow
def test_tensorflow_logs_are_quiet_unless_asked_for() -> None:
    """A fresh process without TF_CPP_MIN_LOG_LEVEL: no TensorFlow C++ log line on stderr;
    with --verbose they are there (so the check can fail)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    argv = ["-m", "torch_cnn", "compare", str(ZOO / "residual_bn" / "model.keras"), "-n", "8"]
    quiet = run_python(*argv, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "top-1 agreement: 1.0000   PASS" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr
    loud = run_python(*argv, "--verbose", env=env)
    assert loud.returncode == 0 and any(TF_LOG_LINE.match(x) for x in loud.stderr.splitlines())


def test_predictions_are_keras_predictions(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path
) -> None:
    """The zoo's softmax model: torch_cnn.predict's classes and probabilities are Keras's
    predict on the same real images (as PNG files)."""
    from PIL import Image

    images = data.load_cifar10(cifar10_dir, download=False).test.images[:32]
    paths = []
    for i, img in enumerate(images.permute(0, 2, 3, 1).numpy()):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    keras_model = keras.saving.load_model(ZOO / "residual_bn" / "model.keras", compile=False)
    model = torch_cnn.from_keras(ZOO / "residual_bn" / "model.keras")
    x = torch.cat([read_images(p)[0] for p in paths])
    probs = keras_model.predict(x.permute(0, 2, 3, 1).numpy(), verbose=0)
    for p, row in zip(predict(model, x, top_k=3), probs, strict=True):
        order = np.argsort(-row)[:3]
        assert [s.index for s in p.top] == order.tolist()
        assert np.abs(np.array([s.probability for s in p.top]) - row[order]).max() <= 1e-6


def test_resize_is_tf_image_resize(keras: ModuleType, tmp_path: Path) -> None:
    """--resize is tf.image.resize's default (bilinear, half-pixel centres, no antialias)."""
    import tensorflow as tf
    from PIL import Image

    rng = np.random.default_rng(0)
    for h, w in ((48, 64), (20, 17), (7, 9)):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "i.png")
        x, _ = read_images(tmp_path / "i.png", (32, 32), resize=True)
        ref = tf.image.resize(img.astype(np.float32) / 255, (32, 32)).numpy()
        assert np.abs(x[0].permute(1, 2, 0).numpy() - ref).max() <= 1e-6, (h, w)


def test_comparing_in_batches_is_comparing_at_once(
    keras: ModuleType, cifar10_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of a few images (a small memory budget): the same largest |Δ| per layer and
    top-1 agreement as one call over all images; the relative column is the largest over
    the batches, so never below the exact one."""
    from torch_cnn.parity import compare_with_keras

    path = ZOO / "inception_branch_concat" / "model.keras"
    model = torch_cnn.from_keras(path)
    keras_model = keras.saving.load_model(path, compile=False)
    x = data.to_float(data.load_cifar10(cifar10_dir, download=False).test.images[:100])
    whole = compare_with_keras(model, keras_model, x)
    monkeypatch.setattr(compare, "COMPARE_MEMORY", 1 << 17)
    assert compare._batch_size(model, x) < 20
    batched = compare.compare_in_batches(model, keras_model, x)
    assert batched.n_images == 100 and batched.top1_agreement == whole.top1_agreement
    for a, b in zip(whole.layers, batched.layers, strict=True):
        assert (a.keras_layer, a.shape, a.params, a.ok) == (b.keras_layer, b.shape, b.params, b.ok)
        assert a.max_abs == b.max_abs and b.max_rel >= a.max_rel
