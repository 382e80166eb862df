"""Training converted Keras models: ``fit``/``evaluate`` through the Python API and
``torch-cnn train --from-keras FILE`` (issue 14 §1; the step-for-step parity with Keras is
parity_tests/test_train_converted.py).

Models are small Keras models converted with ``torch_cnn.from_keras``; data are subsets of
the real CIFAR-10 sample. Reproducibility and resume are compared with ``torch.equal``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import torch_cnn
from tests.helpers import KEYS, assert_same, load_script, small_data_dir, subset
from torch_cnn import data
from torch_cnn.cli import main as cli_main
from torch_cnn.layers.norm import BatchNorm2d
from torch_cnn.models import KerasGraph
from torch_cnn.optim import KerasSGD, create_optimizer
from torch_cnn.train import CHECKPOINT_NAME, evaluate, fit, load_checkpoint
from torch_cnn.train.objective import objective_for

pytestmark = [pytest.mark.keras, pytest.mark.data]

VEHICLES = (0, 1, 8, 9)  # airplane, automobile, ship, truck: label 0 of the binary task


@pytest.fixture(scope="module")
def ds(cifar10_dir: Path) -> data.Cifar10:
    return data.load_cifar10(cifar10_dir)


def convert(keras: ModuleType, build: Callable[[Any], Any]) -> KerasGraph:
    keras.utils.set_random_seed(0)  # the Keras initialisers: the same model every time
    model = torch_cnn.from_keras(build(keras))
    assert isinstance(model, KerasGraph)
    return model


def residual(k: Any, *, dropout: float = 0.0, head: str = "softmax", units: int = 10) -> Any:
    """Conv-BN stem, a depthwise/1×1 residual block (Add), noise layers, Dense head."""
    L = k.layers
    x = k.Input(shape=(32, 32, 3))
    h = L.Conv2D(8, 4, strides=4, use_bias=False, name="stem")(x)  # (8, 8, 8)
    h = L.ReLU()(L.BatchNormalization(momentum=0.9, name="bn")(h))
    r = L.DepthwiseConv2D(3, padding="same", name="dw")(h)
    r = L.Conv2D(8, 1, name="pw")(L.SpatialDropout2D(dropout)(r))
    h = L.GaussianNoise(0.1 if dropout else 0.0)(L.ReLU()(L.Add()([h, r])))
    h = L.Dropout(dropout)(L.GlobalAveragePooling2D()(h))
    return k.Model(x, L.Dense(units, activation=head, name="head")(h), name="residual")


def frozen_stem(k: Any) -> Any:
    """A frozen Conv2D and a frozen BatchNormalization before trainable layers."""
    L = k.layers
    x = k.Input(shape=(32, 32, 3))
    h = L.Conv2D(8, 4, strides=4, trainable=False, name="frozen_conv")(x)
    h = L.BatchNormalization(trainable=False, name="frozen_bn")(h)
    h = L.ReLU()(L.BatchNormalization(name="bn")(L.Conv2D(8, 3, name="conv")(h)))
    return k.Model(x, L.Dense(10, name="logits")(L.Flatten()(h)), name="frozen_stem")


def dropout_model(k: Any) -> Any:
    return residual(k, dropout=0.3)


def sigmoid_model(k: Any) -> Any:
    return residual(k, head="sigmoid", units=1)


def _fit(model: torch.nn.Module, train: Any, val: Any = None, **kw: Any) -> Any:
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)
    return fit(model, train, val, **kw)


# ---------------------------------------------------------------------------------------------
# fit and evaluate


def test_fit_and_evaluate_take_datasets_and_arrays(keras: ModuleType, ds: data.Cifar10) -> None:
    """A TensorDataset of float images and NumPy uint8 arrays are the same data to fit (the
    arrays are divided by 255 as Keras's recipe does): the same weights, bit for bit."""
    train, val = subset(ds.train, 128), subset(ds.test, 64)
    floats = TensorDataset(data.to_float(train.images), train.labels)
    arrays = (train.images.numpy(), train.labels.numpy())
    a, b = convert(keras, residual), convert(keras, residual)
    assert_same(a.state_dict(), b.state_dict(), "start")
    ha = _fit(a, floats, TensorDataset(data.to_float(val.images), val.labels), epochs=2, seed=1)
    hb = _fit(b, arrays, (val.images.numpy(), val.labels.numpy()), epochs=2, seed=1)
    assert_same(a.state_dict(), b.state_dict(), "weights")
    assert dict(ha) == dict(hb) and list(ha) == KEYS and ha.epochs == 2
    assert ha["loss"][1] < ha["loss"][0], ha["loss"]
    assert ha.config["model"] == "residual" and ha.config["loss"] == "cross_entropy(logits)"
    result = evaluate(a, arrays, batch_size=50)
    assert result.num_samples == 128 and sum(map(sum, result.confusion)) == 128
    assert len(result.per_class_accuracy) == 10
    assert a.training  # evaluate restores the mode it found (fit left it training)
    with torch.no_grad():
        a.eval()
        logits = a.logits(data.to_float(train.images))
    assert result.loss == pytest.approx(F.cross_entropy(logits.double(), train.labels).item())
    assert result.accuracy == (logits.argmax(1) == train.labels).double().mean().item()


def test_sigmoid_unit_trains_on_binary_labels(keras: ModuleType, ds: data.Cifar10) -> None:
    """One sigmoid unit: binary cross-entropy from its logit, 0/1 labels, a 2×2 confusion."""
    train, val = subset(ds.train, 256), subset(ds.test, 128)

    def binary(split: data.Split) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (~torch.isin(split.labels, torch.tensor(VEHICLES))).long()
        return split.images, labels

    model = convert(keras, sigmoid_model)
    objective = objective_for(model)
    assert (objective.kind, objective.num_classes) == ("binary", 2)
    history = _fit(model, binary(train), binary(val), epochs=3, seed=0)
    assert history["loss"][2] < history["loss"][0]
    assert history.config["loss"].startswith("binary_crossentropy")
    x, y = binary(val)
    result = evaluate(model, (x, y.float().reshape(-1, 1)))  # float 0/1 labels, shape (N, 1)
    assert len(result.confusion) == 2 and sum(map(sum, result.confusion)) == 128
    model.eval()
    with torch.no_grad():
        z = model.logits(data.to_float(x)).reshape(-1)
        expected = F.binary_cross_entropy_with_logits(z.double(), y.double()).item()
        assert torch.equal(model(data.to_float(x)).reshape(-1), torch.sigmoid(z))
    assert result.loss == pytest.approx(expected, rel=1e-6)
    assert result.accuracy == ((z > 0).long() == y).double().mean().item()
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1; received [2-9]"):
        _fit(model, train, epochs=1)  # CIFAR-10's ten classes do not fit one unit


def test_frozen_layers_get_no_gradient(keras: ModuleType, ds: data.Cifar10) -> None:
    """``trainable=False`` in Keras: no gradient, no weight decay, and a frozen BN normalises
    with (and keeps) its moving statistics in training."""
    model = convert(keras, frozen_stem)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        "frozen_conv.weight",
        "frozen_conv.bias",
        "frozen_bn.weight",
        "frozen_bn.bias",
    }
    bn = model.get_submodule("frozen_bn")
    assert isinstance(bn, BatchNorm2d) and bn.trainable is False
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # AdamW over all parameters: a frozen one has no gradient, so Keras's decay skips it too.
    optimizer = create_optimizer("keras_adamw", model.parameters(), weight_decay=0.5)
    _fit(model, subset(ds.train, 128), epochs=2, optimizer=optimizer)
    after = model.state_dict()
    unchanged = {k for k in before if torch.equal(before[k], after[k])}
    assert unchanged == {
        "frozen_conv.weight",
        "frozen_conv.bias",
        "frozen_bn.weight",
        "frozen_bn.bias",
        "frozen_bn.running_mean",
        "frozen_bn.running_var",
        "frozen_bn.num_batches_tracked",
    }
    model.train()
    model.zero_grad(set_to_none=True)
    model.logits(data.to_float(ds.train.images[:8])).sum().backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert grads.isdisjoint(frozen) and grads == {n for n, _ in model.named_parameters()} - frozen


def test_dropout_is_keras_scaled_in_training_only(keras: ModuleType) -> None:
    """Dropout(rate) keeps x / (1 - rate) or zeroes it in training; identity at inference."""
    model = convert(keras, lambda k: k.Sequential([k.Input((200,)), k.layers.Dropout(0.25)]))
    x = torch.rand(16, 200) + 0.5
    assert torch.equal(model.eval()(x), x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        y = model.train()(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75, rtol=1e-6, atol=0)
    assert 0.6 < kept.double().mean().item() < 0.9  # about 1 - rate of 3,200 draws


def test_dropout_run_repeats_and_resume_equals_uninterrupted(
    keras: ModuleType, ds: data.Cifar10, tmp_path: Path
) -> None:
    """Dropout, SpatialDropout2D and GaussianNoise draw from fit's own seeded stream: a CPU run
    repeats bit for bit, another seed differs, the caller's RNG is untouched, and a run
    interrupted after epoch 1 and resumed ends with the uninterrupted run's weights."""
    train, val = subset(ds.train, 160), subset(ds.test, 64)
    kw: dict[str, Any] = {"epochs": 3, "seed": 4}
    full = convert(keras, dropout_model)
    state = torch.get_rng_state()
    h_full = _fit(full, train, val, checkpoint_dir=tmp_path / "full", **kw)
    assert torch.equal(torch.get_rng_state(), state)
    again = convert(keras, dropout_model)
    assert dict(_fit(again, train, val, **kw)) == dict(h_full)
    assert_same(full.state_dict(), again.state_dict(), "repeat")
    other = convert(keras, dropout_model)
    _fit(other, train, val, **{**kw, "seed": 5})
    assert not torch.equal(full.get_parameter("head.weight"), other.get_parameter("head.weight"))

    def stop_after_first(epoch: int, logs: Any) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        _fit(convert(keras, dropout_model), train, val, checkpoint_dir=cut,
             on_epoch_end=stop_after_first, **kw)  # fmt: skip
    resumed = convert(keras, dropout_model)
    h_res = _fit(resumed, train, val, checkpoint_dir=cut, resume=True, **kw)
    assert dict(h_res) == dict(h_full)
    assert_same(full.state_dict(), resumed.state_dict(), "resumed")
    a, b = (
        load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME),
        load_checkpoint(cut / CHECKPOINT_NAME),
    )
    assert_same(a["rng"], b["rng"], "rng")


# ---------------------------------------------------------------------------------------------
# torch-cnn train --from-keras


def larger_input(k: Any) -> Any:
    """40×40 inputs (CIFAR-10 is resized), 12 classes, compiled with SGD and trained a little."""
    L = k.layers
    x = k.Input(shape=(40, 40, 3))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 5, strides=5, use_bias=False)(x)))
    h = L.Dropout(0.2)(L.Flatten()(h))
    return k.Model(x, L.Dense(12, activation="softmax")(h), name="larger_input")


@pytest.mark.slow
def test_cli_train_from_keras_file(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keras.utils.set_random_seed(0)
    keras_model = larger_input(keras)
    keras_model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy"
    )
    rng = np.random.default_rng(0)
    keras_model.fit(rng.random((96, 40, 40, 3)), np.arange(96) % 12, batch_size=32, verbose=0)
    path = tmp_path / "model.keras"
    keras_model.save(path)
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")  # 200 train, 120 test images
    out = tmp_path / "run"
    common = ["--from-keras", str(path), "--data-dir", str(data_dir), "--device", "cpu"]
    assert cli_main(["train", *common, "--epochs", "1", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["confusion.png", "curves.png", "history.json", CHECKPOINT_NAME, "metrics.json",
         "model.safetensors"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert "resized to 40×40" in err and "KerasSGD, 3 steps taken in Keras" in err
    history = json.loads((out / "history.json").read_text())
    assert list(history) == KEYS and all(len(v) == 1 for v in history.values())
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert metrics["model"] == "larger_input" and config["source"] == str(path)
    assert config["optimizer"] == "KerasSGD" and config["optimizer_hparams"][0]["momentum"] == 0.9
    assert config["optimizer_hparams"][0]["lr"] == float(np.float32(0.01))
    assert len(metrics["per_class_accuracy"]) == 12  # 10 CIFAR-10 names, class_10, class_11
    assert list(metrics["per_class_accuracy"])[-2:] == ["class_10", "class_11"]
    # The file's optimizer state continued: Keras's 3 steps, then 7 (200 images, batch 32).
    ckpt = load_checkpoint(out / CHECKPOINT_NAME)
    assert ckpt["optimizer"]["param_groups"][0]["step"] == 3 + 7
    weights = torch_cnn.load(out / "model.safetensors")
    assert_same(weights.state_dict(), ckpt["model"], "weights")
    argv = ["evaluate", "--checkpoint", str(out / "model.safetensors"), "--data-dir", str(data_dir)]
    assert cli_main([*argv, "--device", "cpu"]) == 0
    assert f"test_accuracy {metrics['test_accuracy']:.4f}" in capsys.readouterr().out.splitlines()
    # --resume continues to a second epoch; the first is the same epoch.
    assert cli_main(["train", *common, "--epochs", "2", "--resume", "--out", str(out)]) == 0
    resumed = json.loads((out / "history.json").read_text())
    assert resumed["loss"][0] == history["loss"][0] and len(resumed["loss"]) == 2

    # --optimizer starts a fresh one instead of the file's.
    fresh = tmp_path / "fresh"
    argv = ["train", *common, "--epochs", "1", "--optimizer", "keras_sgd", "--lr", "0.05"]
    assert cli_main([*argv, "--out", str(fresh)]) == 0
    config = json.loads((fresh / "metrics.json").read_text())["config"]
    assert config["optimizer_name"] == "keras_sgd" and config["optimizer_hparams"][0]["lr"] == 0.05
    assert config["optimizer_hparams"][0]["momentum"] == 0.0
    assert load_checkpoint(fresh / CHECKPOINT_NAME)["optimizer"]["param_groups"][0]["step"] == 7


def test_cli_from_keras_refuses_what_cifar10_cannot_feed(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A model of one-channel images: the error names both shapes, nothing is written."""
    L = keras.layers
    x = keras.Input(shape=(28, 28, 1))
    path = tmp_path / "gray.keras"
    keras.Model(x, L.Dense(10)(L.Flatten()(x))).save(path)
    out = tmp_path / "run"
    argv = ["train", "--from-keras", str(path), "--data-dir", str(cifar10_dir), "--out", str(out)]
    assert cli_main([*argv, "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "(N, 1, 28, 28)" in err and "(N, 3, 32, 32)" in err
    assert not out.exists()


def test_optimizer_from_keras_needs_a_compiled_source(keras: ModuleType) -> None:
    from torch_cnn.convert.optimizer import (
        optimizer_from_keras,
        optimizer_from_keras_state,
        read_keras_optimizer,
    )

    keras_model = residual(keras)
    model = torch_cnn.from_keras(keras_model)
    assert read_keras_optimizer(keras_model) is None
    with pytest.raises(ValueError, match="carries no optimizer"):
        optimizer_from_keras(model, keras_model)
    keras_model.compile(optimizer=keras.optimizers.SGD(momentum=0.5), loss="mse")
    optimizer = optimizer_from_keras(model, keras_model)  # not built yet: zero slots, step 0
    assert isinstance(optimizer, KerasSGD) and optimizer.iterations == 0
    assert len(optimizer.param_groups[0]["params"]) == len(keras_model.trainable_variables)
    with pytest.raises(TypeError, match="received int"):
        optimizer_from_keras(model, 3)
    wrong = [np.int64(4), np.float32(0.01), np.zeros((3, 3))]  # not one slot per variable
    with pytest.raises(ValueError, match=r"does not fit model 'residual' \(9 trainable"):
        optimizer_from_keras_state(model, "sgd", wrong)


# ---------------------------------------------------------------------------------------------
# scripts/accuracy_parity_converted.py


@pytest.mark.slow
def test_accuracy_parity_script_tiny(
    keras: ModuleType, cifar10_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One epoch, one seed, few images: the table, both frameworks, the gap and its verdict."""
    script = load_script("accuracy_parity_converted")
    argv = ["--data-dir", str(cifar10_dir), "--epochs", "1", "--seeds", "3"]
    argv += ["--train-images", "256", "--test-images", "128", "--model", "residual_bn"]
    assert script.main([*argv, "--max-gap", "100"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]  # not the |---| rule
    assert rows[0].startswith("| residual_bn | test accuracy %, mean ± sd (1 seed)")
    accs = {}
    assert len(rows) == 4
    for row in rows[1:3]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        mean, sd = (float(v) for v in cells[1].split(" ± "))
        assert sd == 0.0 and mean == float(cells[2]) and 0.0 <= mean <= 100.0
        accs["keras" if cells[0].startswith("Keras") else "torch"] = mean
    assert set(accs) == {"keras", "torch"}
    gap = rows[3].split("|")[2].strip()
    assert rows[3].startswith("| difference (torch_cnn − Keras) |") and gap.endswith(" points")
    assert float(gap.split()[0]) == pytest.approx(accs["torch"] - accs["keras"], abs=0.011)
    assert "256 training / 128 test images" in out and "(≤ 100: ok)" in out
    # A bar no gap can meet: exit status 1, and the verdict says so.
    assert script.main([*argv, "--max-gap", "-1"]) == 1
    assert "(≤ -1: FAIL)" in capsys.readouterr().out


def test_cli_from_keras_refuses_labels_the_model_cannot_take(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One sigmoid unit on CIFAR-10's ten classes: refused before training, nothing written."""
    path = tmp_path / "binary.keras"
    keras.utils.set_random_seed(0)
    sigmoid_model(keras).save(path)
    out = tmp_path / "run"
    argv = ["train", "--from-keras", str(path), "--data-dir", str(cifar10_dir), "--out", str(out)]
    assert cli_main([*argv, "--device", "cpu"]) == 2
    assert "labels must lie in 0..1" in capsys.readouterr().err
    assert not out.exists()
