"""torch_cnn.train (fit, evaluate, checkpoints), torch_cnn.plots and the train/evaluate commands.

Runs on subsets of the real CIFAR-10 sample with ``model_cnn`` (cheap on a CPU); the
reproducibility and resume tests compare tensors with ``torch.equal``: bit for bit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_cnn
from tests.helpers import KEYS, assert_same, small_data_dir, subset
from torch_cnn import data, train
from torch_cnn.cli import main as cli_main
from torch_cnn.plots import plot_confusion, plot_history
from torch_cnn.train import (
    CHECKPOINT_NAME,
    evaluate,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    seeded_model,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ds(cifar10_dir: Path) -> data.Cifar10:
    return data.load_cifar10(cifar10_dir)


def _run(split: data.Split, val: data.Split | None = None, **kw: Any) -> tuple[Any, Any]:
    model = seeded_model("model_cnn", kw.pop("init_seed", 0))
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)
    return model, fit(model, split, val, **kw)


# ---------------------------------------------------------------------------------------------
# fit


def test_loss_falls_on_real_data(ds: data.Cifar10) -> None:
    _, history = _run(subset(ds.train, 512), subset(ds.test, 256), epochs=3)
    assert list(history) == KEYS
    assert all(len(v) == 3 for v in history.values()) and len(history.seconds) == 3
    assert history["loss"][2] < history["loss"][0] - 0.05
    assert history["val_loss"][2] < history["val_loss"][0]
    assert history["accuracy"][2] > history["accuracy"][0]
    assert all(0.0 <= a <= 1.0 for a in history["accuracy"] + history["val_accuracy"])


def test_epoch_metrics_are_keras_means(ds: data.Cifar10) -> None:
    # With a learning rate of 0 the weights never move, so Keras's epoch loss (batch losses
    # weighted by batch size) is the mean loss over all images, and accuracy is exact. 100
    # images in batches of 48 leave a batch of 4: an unweighted mean of batch means differs.
    split = subset(ds.train, 100)
    model = seeded_model("model_cnn", 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    history = fit(model, split, split, epochs=1, batch_size=48, optimizer=opt, progress=False)
    x, y = data.to_float(split.images), split.labels
    with torch.no_grad():
        per_sample = F.cross_entropy(model.logits(x).double(), y, reduction="none")
        correct = (model.logits(x).argmax(1) == y).sum().item()
    assert history["loss"][0] == pytest.approx(per_sample.mean().item(), rel=1e-6)
    assert history["accuracy"][0] == correct / 100
    assert history["val_loss"][0] == pytest.approx(per_sample.mean().item(), rel=1e-6)
    unweighted = torch.stack([c.mean() for c in per_sample.split(48)]).mean().item()
    assert abs(history["loss"][0] - unweighted) > 1e-4


def test_default_optimizer_is_keras_adam() -> None:
    from torch_cnn.optim import KerasAdam

    opt = train.default_optimizer(seeded_model("model_cnn", 0).parameters())
    assert isinstance(opt, KerasAdam)
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["eps"] == 1e-7


def test_seed_makes_cpu_run_bit_exact(ds: data.Cifar10) -> None:
    split = subset(ds.train, 256)
    kw: dict[str, Any] = {"epochs": 2, "seed": 3, "augment": True, "init_seed": 3}
    a, ha = _run(split, **kw)
    b, hb = _run(split, **kw)
    assert_same(a.state_dict(), b.state_dict(), "weights")
    assert dict(ha) == dict(hb)
    c, hc = _run(split, **{**kw, "seed": 4})  # same weights at the start, another order
    assert not torch.equal(a.fc.weight, c.fc.weight) and dict(ha) != dict(hc)


def test_global_rng_untouched(ds: data.Cifar10) -> None:
    state = torch.get_rng_state()
    _run(subset(ds.train, 64), epochs=1, augment=True)
    assert torch.equal(torch.get_rng_state(), state)


def _checkpoint(directory: Path) -> dict[str, Any]:
    return load_checkpoint(directory / CHECKPOINT_NAME)


def test_resume_after_interrupt_is_bit_exact(ds: data.Cifar10, tmp_path: Path) -> None:
    # With augmentation, so the generator's state must carry over for the shuffles and crops.
    split, val = subset(ds.train, 256), subset(ds.test, 64)
    kw: dict[str, Any] = {"epochs": 3, "seed": 5, "augment": True}
    full, h_full = _run(split, val, checkpoint_dir=tmp_path / "full", **kw)

    def stop_after_first(epoch: int, logs: Any) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(split, val, checkpoint_dir=tmp_path / "cut", on_epoch_end=stop_after_first, **kw)
    assert _checkpoint(tmp_path / "cut")["epoch"] == 1
    # A fresh process would build the model again; another init proves the checkpoint wins.
    resumed, h_res = _run(
        split, val, checkpoint_dir=tmp_path / "cut", resume=True, init_seed=9, **kw
    )

    assert_same(full.state_dict(), resumed.state_dict(), "weights")
    assert dict(h_full) == dict(h_res) and h_res.epochs == 3
    a, b = _checkpoint(tmp_path / "full"), _checkpoint(tmp_path / "cut")
    for key in ("epoch", "model", "optimizer", "rng", "history"):
        assert_same(a[key], b[key], key)
    assert a["optimizer"]["param_groups"][0]["step"] == 3 * 8  # 256 images, batches of 32


def test_resume_to_more_epochs(ds: data.Cifar10, tmp_path: Path) -> None:
    split = subset(ds.train, 128)
    full, _ = _run(split, epochs=2, checkpoint_dir=tmp_path / "a")
    _run(split, epochs=1, checkpoint_dir=tmp_path / "b")
    more, history = _run(split, epochs=2, checkpoint_dir=tmp_path / "b", resume=True)
    assert_same(full.state_dict(), more.state_dict(), "weights")
    assert_same(_checkpoint(tmp_path / "a")["optimizer"], _checkpoint(tmp_path / "b")["optimizer"])
    assert history.epochs == 2


def test_resume_refuses_other_settings(ds: data.Cifar10, tmp_path: Path) -> None:
    split = subset(ds.train, 64)
    _run(split, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size=32; received batch_size=16"):
        _run(split, epochs=2, batch_size=16, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):
        _run(split, epochs=1, resume=True)
    _, history = _run(split, epochs=1, checkpoint_dir=tmp_path / "none", resume=True)
    assert history.epochs == 1  # nothing to resume from: a fresh run


def test_interrupt_mid_epoch_keeps_last_checkpoint(ds: data.Cifar10, tmp_path: Path) -> None:
    split = subset(ds.train, 128)
    after_one, _ = _run(split, epochs=1)

    def stop(epoch: int, batch: int) -> None:
        if (epoch, batch) == (2, 2):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(split, epochs=3, checkpoint_dir=tmp_path, on_batch_end=stop)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]["loss"]) == 1
    assert_same(after_one.state_dict(), ckpt["model"], "weights")


def test_interrupt_while_writing_keeps_last_checkpoint(
    ds: data.Cifar10, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = subset(ds.train, 64)
    real_save = torch.save
    calls = []

    def save_then_interrupt(obj: Any, f: Any) -> None:
        calls.append(f)
        if len(calls) == 2:  # the second epoch's write dies halfway
            Path(f).write_bytes(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        real_save(obj, f)

    monkeypatch.setattr(train.checkpoint.torch, "save", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(split, epochs=3, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]  # temp file removed
    assert _checkpoint(tmp_path)["epoch"] == 1


def test_fit_options_and_inputs(ds: data.Cifar10) -> None:
    x, y = ds.train.images[:64], ds.train.labels[:64]
    # uint8 or float (x, y) tensors as well as Splits; bf16 autocast and channels_last on CPU.
    _, h8 = _run((x, y), epochs=1)
    _, hf = _run((data.to_float(x), y), epochs=1)
    assert dict(h8) == dict(hf)
    _, hb = _run((x, y), (x, y), epochs=1, bf16=True, channels_last=True)
    assert all(math.isfinite(v[0]) for v in hb.values())
    with pytest.raises(ValueError, match="differ in length"):
        _run((x, y[:10]), epochs=1)


@pytest.mark.cuda
def test_cuda_run_resumes(ds: data.Cifar10, tmp_path: Path, cuda_device: str) -> None:
    split = subset(ds.train, 256)
    model, history = _run(split, epochs=2, device=cuda_device, checkpoint_dir=tmp_path)
    assert next(model.parameters()).is_cuda and "cuda" in _checkpoint(tmp_path)["rng"]
    _, cpu_history = _run(split, epochs=2)
    assert history["loss"] == pytest.approx(cpu_history["loss"], rel=1e-3)
    _, h2 = _run(split, epochs=3, device=cuda_device, checkpoint_dir=tmp_path, resume=True)
    assert h2.epochs == 3 and h2["loss"][:2] == history["loss"]


# ---------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_confusion_and_per_class(ds: data.Cifar10) -> None:
    model, _ = _run(subset(ds.train, 256), epochs=1)
    test = subset(ds.test, 300)
    r = evaluate(model, test, batch_size=64)
    confusion = torch.tensor(r.confusion)
    assert confusion.shape == (10, 10) and int(confusion.sum()) == 300 == r.num_samples
    assert confusion.sum(1).tolist() == torch.bincount(test.labels, minlength=10).tolist()
    with torch.no_grad():
        logits = model.logits(data.to_float(test.images))
    pred = logits.argmax(1)
    assert confusion.sum(0).tolist() == torch.bincount(pred, minlength=10).tolist()
    assert r.accuracy == (pred == test.labels).sum().item() / 300
    for c in range(10):
        mask = test.labels == c
        assert r.per_class_accuracy[c] == pytest.approx((pred[mask] == c).float().mean().item())
    assert r.loss == pytest.approx(F.cross_entropy(logits.double(), test.labels).item(), rel=1e-6)
    only_cats = evaluate(model, (test.images[:5], torch.full((5,), 3)))
    assert math.isnan(only_cats.per_class_accuracy[0]) and sum(map(sum, only_cats.confusion)) == 5


# ---------------------------------------------------------------------------------------------
# plots


def test_plots_write_pngs_without_pyplot(tmp_path: Path) -> None:
    had_pyplot = "matplotlib.pyplot" in sys.modules
    history = {"loss": [2.0, 1.7], "accuracy": [0.2, 0.3], "val_loss": [1.9, 1.8]}
    assert plot_history(history, tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
    matrix = np.arange(100).reshape(10, 10)
    path = plot_confusion(matrix, [str(i) for i in range(10)], tmp_path / "confusion.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match=r"\(3, 3\) matrix for 3 classes; received shape"):
        plot_confusion(matrix, ["a", "b", "c"], tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]
    if not had_pyplot:
        assert "matplotlib.pyplot" not in sys.modules


def _drawn_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures ``torch_cnn.plots`` saves from now on, kept for the test to read."""
    import torch_cnn.plots as plots

    figures: list[Any] = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (figures.append(fig), save(fig, path))[1])
    return figures


def _curves(figures: list[Any]) -> Any:
    """The last training-curves figure among ``figures`` (confusion matrices left out)."""
    return [f for f in figures if f.axes and f.axes[0].get_title() == "loss"][-1]


def _curve_text(fig: Any) -> tuple[str, list[list[str]]]:
    """A curves figure's heading and each panel's legend labels."""
    heading = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return heading, [ax.get_legend_handles_labels()[1] for ax in fig.axes]


def test_curves_name_the_model_the_run_and_the_validation_split(
    ds: data.Cifar10, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _drawn_figures(monkeypatch)
    history = {"loss": [2.0, 1.7], "accuracy": [0.2, 0.3], "val_loss": [1.9, 1.8]}
    plot_history(history, tmp_path / "c.png", title="m, run x", val_label="validation (test)")
    assert _curve_text(figures[-1]) == ("m, run x", [["train", "validation (test)"], ["train"]])
    plot_history(history, tmp_path / "d.png")
    assert _curve_text(figures[-1]) == ("", [["train", "validation"], ["train"]])
    # fit's run directory: the model, the run directory and the epochs head the curves.
    split = subset(ds.train, 64)
    _run(split, split, epochs=1, checkpoint_dir=tmp_path / "run")
    heading, labels = _curve_text(_curves(figures))
    assert heading == f"model_cnn, run {tmp_path / 'run'}, 1 epoch"
    assert labels == [["train", "validation"]] * 2


# ---------------------------------------------------------------------------------------------
# The train and evaluate commands


def _cli(argv: list[str]) -> int:
    return cli_main(argv)  # the `torch-cnn` console script's entry point


def test_cli_train_then_evaluate(
    cifar10_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    out = tmp_path / "run"
    common = ["--model", "model_cnn", "--data-dir", str(data_dir), "--device", "cpu"]
    figures = _drawn_figures(monkeypatch)
    assert _cli(["train", *common, "--epochs", "1", "--seed", "1", "--out", str(out)]) == 0
    # The curves the run directory keeps say which data the validation curves are.
    assert _curve_text(_curves(figures)) == (
        f"model_cnn, run {out}, 1 epoch",
        [["train", "validation (the test split)"]] * 2,
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "confusion.png",
            "curves.png",
            "history.json",
            CHECKPOINT_NAME,
            "metrics.json",
            "model.safetensors",
        ]
    )
    history = json.loads((out / "history.json").read_text())
    assert list(history) == KEYS and all(len(v) == 1 for v in history.values())
    metrics = json.loads((out / "metrics.json").read_text())
    classes = data.load_cifar10(data_dir).classes
    assert list(metrics["per_class_accuracy"]) == classes
    assert metrics["framework"] == "torch" and metrics["seed"] == 1
    assert (metrics["num_train"], metrics["num_test"]) == (200, 120)
    assert metrics["data_dir"] == str(data_dir) and metrics["device"].startswith("cpu")
    assert set(metrics["versions"]) == {"python", "torch", "numpy", "torch_cnn"}
    assert metrics["config"]["epochs"] == 1 and metrics["config"]["batch_size"] == 32
    assert len(metrics["epoch_seconds"]) == 1 and metrics["seconds"] > 0
    for png in ("curves.png", "confusion.png"):
        assert (out / png).read_bytes().startswith(PNG_MAGIC)
    # The final weights and the last checkpoint are the same model.
    weights = torch_cnn.load(out / "model.safetensors")
    assert_same(weights.state_dict(), _checkpoint(out)["model"], "weights")
    printed = capsys.readouterr().out
    assert f"test_accuracy {metrics['test_accuracy']:.4f}" in printed and str(out) in printed

    for checkpoint in ("model.safetensors", CHECKPOINT_NAME):
        argv = ["evaluate", "--checkpoint", str(out / checkpoint), "--data-dir", str(data_dir)]
        assert _cli([*argv, "--device", "cpu"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert f"test_accuracy {metrics['test_accuracy']:.4f}" in lines
        assert f"test_loss {metrics['test_loss']:.4f}" in lines

    # --resume continues the same run to more epochs.
    assert (
        _cli(["train", *common, "--epochs", "2", "--seed", "1", "--resume", "--out", str(out)]) == 0
    )
    resumed = json.loads((out / "history.json").read_text())
    assert resumed["loss"][0] == history["loss"][0] and len(resumed["loss"]) == 2
    assert model_from_checkpoint(out / CHECKPOINT_NAME).name == "model_cnn"


def test_cli_train_names_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    argv = ["train", "--model", "model_cnn", "--data-dir", str(empty), "--out", str(tmp_path / "r")]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert str(empty) in err and "data_batch_1" in err
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_the_cli_optimizers_are_the_library_factory() -> None:
    """``--optimizer`` takes create_optimizer's names and builds with them (one factory)."""
    from torch_cnn.cli import build_parser
    from torch_cnn.optim import KerasAdam, create_optimizer, list_optimizers

    params = [torch.nn.Parameter(torch.zeros(3))]
    assert isinstance(create_optimizer("keras_adam", params, lr=1e-3), KerasAdam)
    adam = create_optimizer("torch_adam", params, lr=2e-3)
    assert type(adam) is torch.optim.Adam
    assert adam.param_groups[0]["eps"] == 1e-7 and adam.param_groups[0]["lr"] == 2e-3
    with pytest.raises(ValueError, match=r"sgd.*keras_adam"):
        create_optimizer("sgd", params, lr=1e-3)
    action = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
        if a.dest == "optimizer"
    )
    assert list(action.choices) == list_optimizers()


def test_resume_refuses_another_optimizer(ds: data.Cifar10, tmp_path: Path) -> None:
    split = subset(ds.train, 64)
    fit(seeded_model("model_cnn", 0), split, epochs=1, checkpoint_dir=tmp_path, progress=False)
    model = seeded_model("model_cnn", 0)
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=r"optimizer='KerasAdam'.*optimizer='Adam'"):
        fit(
            model,
            split,
            epochs=2,
            optimizer=opt,
            checkpoint_dir=tmp_path,
            resume=True,
            progress=False,
        )


def test_resume_refuses_another_learning_rate_or_dataset(ds: data.Cifar10, tmp_path: Path) -> None:
    """A checkpoint's optimizer state would silently restore its own lr; other data, another
    permutation: both would end away from the uninterrupted run, so both are refused."""
    from torch_cnn.optim import KerasAdam

    split = subset(ds.train, 64)
    fit(seeded_model("model_cnn", 0), split, epochs=1, checkpoint_dir=tmp_path, progress=False)
    model = seeded_model("model_cnn", 0)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"optimizer_hparams=.*'lr': 0.001.*'lr': 0.5"):
        fit(
            model,
            split,
            epochs=2,
            optimizer=KerasAdam(model.parameters(), lr=0.5),
            checkpoint_dir=tmp_path,
            resume=True,
            progress=False,
        )
    with pytest.raises(ValueError, match="num_train=64; received num_train=96"):
        fit(
            model,
            subset(ds.train, 96),
            epochs=2,
            checkpoint_dir=tmp_path,
            resume=True,
            progress=False,
        )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize("tty", [False, True], ids=["pipe", "terminal"])
def test_progress_bar_in_a_terminal_lines_otherwise(
    ds: data.Cifar10, tty: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    # Slow batches, so that tqdm (which redraws at most every 0.1 s) shows the running values.
    slow = {"on_batch_end": lambda epoch, batch: time.sleep(0.12)} if tty else {}
    _run(subset(ds.train, 96), subset(ds.test, 32), epochs=2, progress=True, **slow)
    err = capsys.readouterr().err
    if tty:  # tqdm redraws one bar per epoch (\r) with running loss and accuracy
        assert "\r" in err and "3/3" in err and "batch" in err
        assert "loss=" in err and "accuracy=" in err
        assert "epoch 1/2" in err and "epoch 2/2" in err and "val_accuracy" in err
    else:  # one plain line per epoch, nothing else
        lines = err.strip().splitlines()
        assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"], err
        assert all(" val_accuracy 0." in line and "\r" not in line for line in lines)


def test_cli_ctrl_c_then_resume_equals_uninterrupted(
    cifar10_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C in the middle of epoch 2: exit 130, a hint, epoch 1's checkpoint; --resume then
    ends with the weights of a run that was never interrupted."""
    from torch_cnn.cli import training as cli_train

    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    common = ["--model", "model_cnn", "--data-dir", str(data_dir), "--device", "cpu"]
    common += ["--epochs", "3", "--seed", "2", "--augment"]
    assert _cli(["train", *common, "--out", str(tmp_path / "full")]) == 0

    real_fit = cli_train.fit

    def interrupted_fit(*args: Any, **kwargs: Any) -> Any:
        def ctrl_c(epoch: int, batch: int) -> None:
            if (epoch, batch) == (2, 3):
                raise KeyboardInterrupt

        return real_fit(*args, **kwargs, on_batch_end=ctrl_c)

    cut = tmp_path / "cut"
    monkeypatch.setattr(cli_train, "fit", interrupted_fit)
    assert _cli(["train", *common, "--out", str(cut)]) == 130
    assert "interrupted: continue with the same command and --resume" in capsys.readouterr().err
    assert sorted(p.name for p in cut.iterdir()) == [CHECKPOINT_NAME]
    assert _checkpoint(cut)["epoch"] == 1
    monkeypatch.setattr(cli_train, "fit", real_fit)
    assert _cli(["train", *common, "--resume", "--out", str(cut)]) == 0
    assert_same(
        torch_cnn.load(tmp_path / "full" / "model.safetensors").state_dict(),
        torch_cnn.load(cut / "model.safetensors").state_dict(),
        "weights",
    )
    full_history = json.loads((tmp_path / "full" / "history.json").read_text())
    assert json.loads((cut / "history.json").read_text()) == full_history


def test_fit_with_a_checkpoint_dir_writes_the_run_directory_train_writes(
    ds: data.Cifar10, tmp_path: Path
) -> None:
    """The API and the CLI agree on what a run directory holds (the same files, the same
    schema): fit's metrics come from its validation data, labelled as such."""
    out = tmp_path / "run"
    model = seeded_model("model_cnn", 0)
    history = fit(model, subset(ds.train, 64), subset(ds.test, 40), epochs=1, batch_size=16,
                  device="cpu", progress=False, checkpoint_dir=out, class_names=ds.classes)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["confusion.png", "curves.png", "history.json", CHECKPOINT_NAME, "metrics.json",
         "model.safetensors"]
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["num_test"] == 40
    assert list(metrics["per_class_accuracy"]) == ds.classes
    assert metrics["test_accuracy"] == history["val_accuracy"][-1]
    assert json.loads((out / "history.json").read_text()) == dict(history)
    assert_same(torch_cnn.load(out / "model.safetensors").state_dict(), model.state_dict(), "w")


def test_a_diverged_run_keeps_its_history_with_nan_as_null(tmp_path: Path) -> None:
    """TerminateOnNaN: fit stops at the step the loss became NaN, says where, and the run
    directory is still written (history.json holds null where the loss was NaN)."""
    x, y = torch.rand(64, 3, 32, 32), torch.arange(64) % 10
    model = seeded_model("model_cnn", 0)
    with torch.no_grad():
        model.get_parameter("fc.weight").fill_(float("nan"))
    history = fit(model, (x, y), epochs=3, batch_size=16, device="cpu", progress=False,
                  checkpoint_dir=tmp_path)  # fmt: skip
    assert history.stopped is not None and "epoch 1, step 1" in history.stopped
    assert history.epochs == 1
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["loss"] == [None]
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # no epoch completed: nothing to resume
