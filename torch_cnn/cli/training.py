"""``torch-cnn train`` and ``torch-cnn evaluate``: the training recipe as two subcommands.

``add_commands(subparsers)`` registers both on the ``torch-cnn`` parser (``cli.build_parser``).
A training run writes everything it produced, with its provenance, into ``--out``
(the run directory: see ``torch_cnn.train.run``).

Several processes: ``torchrun --nproc-per-node=N -m torch_cnn train ...`` trains with
``DistributedDataParallel`` (gloo on the CPU, nccl on CUDA with one GPU per rank; see
``torch_cnn.distributed`` and ``train.fit``). ``--batch-size`` is then the batch of each
rank: the global batch is N times larger. Only rank 0 prints and writes into ``--out``;
``metrics.json`` records ``world_size`` and ``backend``.

Converted Keras models: ``torch-cnn train --from-keras FILE`` trains the model of a Keras
file (``torch_cnn.from_keras``) instead of a registered one, with the optimizer the file was
compiled with and its state (``torch_cnn.convert.optimizer``) when it carries one, so
training continues where Keras stopped; ``--optimizer`` (and ``--lr``) start a fresh one
instead. Images are resized (bilinear, as ``tf.image.resize``) to a model input of another
size; the loss follows the model's last activation (``train.objective``).

Validation data: the seed notebooks as kept in ``shared/seeds`` end before their ``fit``
call, so their validation set is not known. Like the usual Keras CIFAR-10 recipe
(``validation_data=(X_test, y_test)``), the test split is used as validation data, so
``val_*`` in the history are test-set numbers; ``--no-val`` turns them off.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from torch_cnn import data, distributed
from torch_cnn._io import write_json
from torch_cnn.cli.args import (
    FAILURE_STATUS,
    KERAS_MODEL_SUFFIXES,
    CliError,
    add_data_dir,
    add_device,
    command,
    existing,
    is_keras_path,
    is_weights_only_path,
    output_dir,
    plural,
    positive_float,
    positive_int,
    seed,
)
from torch_cnn.cli.common import load_model
from torch_cnn.env import describe_device, parse_device
from torch_cnn.models import KerasGraph, KerasStyleNet, TorchCnnModel
from torch_cnn.optim import KERAS_ADAM_LEARNING_RATE, create_optimizer, list_optimizers
from torch_cnn.registry import list_models
from torch_cnn.train import (
    CHECKPOINT_NAME,
    EVAL_BATCH_SIZE,
    KERAS_FIT_BATCH_SIZE,
    evaluate,
    fit,
    model_from_checkpoint,
    seeded_model,
)
from torch_cnn.train.objective import Data, check_labels, objective_for
from torch_cnn.train.results import History
from torch_cnn.train.run import (
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    RUN_FILES,
    WEIGHTS_FILE,
    curves_title,
    run_metrics,
    stopped_metrics,
    write_evaluation,
)

DEFAULT_EPOCHS = 10
DEFAULT_OPTIMIZER = "keras_adam"


@dataclass
class _Setup:
    """What a run trains: the model, its optimizer and how both were chosen."""

    model: TorchCnnModel
    optimizer: torch.optim.Optimizer
    name: str  # the model's name in metrics.json and the plots
    settings: dict[str, Any]  # added to metrics.json's config
    note: str  # for the first line printed


def _check_train_paths(args: argparse.Namespace) -> None:
    """``--out`` writable and ``--from-keras`` a Keras model file, before any data is read."""
    output_dir(args.out)
    if args.from_keras:
        path = args.from_keras
        if is_weights_only_path(path) or not is_keras_path(path):
            raise CliError(
                f"--from-keras {path}: expected a Keras model file "
                f"({', '.join(KERAS_MODEL_SUFFIXES)} or an unzipped .keras directory)"
            )
        existing(path, "file or directory")


def cmd_train(args: argparse.Namespace) -> int:
    _check_train_paths(args)
    # One process, or one rank of a torchrun launch (then inside its process group).
    status = distributed.run_in_process_group(
        lambda device: _train(args, device), parse_device(args.device)
    )
    return 0 if status is None else status


def _train(args: argparse.Namespace, device: torch.device) -> int:
    out = Path(args.out)
    main = distributed.is_main()  # only rank 0 prints and writes files
    world, backend = distributed.world_size(), distributed.backend()
    with distributed.local_main_first():  # one download per machine, if it comes to that
        root = data.resolve_data_dir(args.data_dir)
    ds = data.load_cifar10(root)
    try:
        setup = _from_keras(args) if args.from_keras else _registered(args)
        train_split, test_split, resized = _fit_images(ds, setup.model)
        check_labels(ds.train.labels, objective_for(setup.model))  # e.g. ten classes, one unit
    except (ValueError, TypeError) as exc:  # a model or optimizer the run cannot take
        raise CliError(str(exc)) from exc
    model = setup.model
    if main:
        ranks = f", {world} ranks ({backend}), global batch {args.batch_size * world}"
        print(
            f"training {setup.name}{setup.note} for {plural(args.epochs, 'epoch')} on "
            f"{plural(len(ds.train), 'image')} from {root}{resized} ({describe_device(device)}, "
            f"seed {args.seed}"
            f"{ranks if world > 1 else ''})",
            file=sys.stderr,
        )
    try:
        names = class_names(ds.classes, objective_for(setup.model).num_classes)
        val = None if args.no_val else test_split
        history = _fit(args, setup, train_split, val, device, names)
    except KeyboardInterrupt:
        if main:
            print(
                f"interrupted: continue with the same command and --resume ({out})",
                file=sys.stderr,
            )
        return 130
    if history.stopped is not None:  # a NaN loss: fit wrote what the run has, without weights
        if main:
            metrics = stopped_metrics(
                history, model=setup.name, device=describe_device(device), seed=args.seed,
                data_dir=str(root), num_train=len(ds.train),
                config={**history.config, **_cli_settings(args), **setup.settings},
            )  # fmt: skip
            write_json(out / METRICS_FILE, metrics)
            files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
            print(f"{setup.name}: stopped early, not evaluated; wrote {out}/: {', '.join(files)}")
        return FAILURE_STATUS
    result = evaluate(  # across ranks: a collective, every rank gets the whole test set's numbers
        model,
        test_split,
        batch_size=EVAL_BATCH_SIZE,
        bf16=args.bf16,
        channels_last=args.channels_last,
    )
    if not main:
        return 0
    classes = class_names(ds.classes, len(result.per_class_accuracy))
    metrics = run_metrics(
        result, classes, framework="torch", model=setup.name, seconds=sum(history.seconds),
        epoch_seconds=history.seconds, device=describe_device(device), seed=args.seed,
        data_dir=str(root), num_train=len(ds.train),
        config={**history.config, **_cli_settings(args), **setup.settings},
        world_size=world, backend=backend,
    )  # fmt: skip
    # fit wrote the rest of the run directory (checkpoint_dir=out): the test numbers replace
    # its validation ones (the same split unless --no-val).
    write_evaluation(out, result, classes, metrics, title=f"{setup.name} test")
    # ... and the curves say that the validation curves are the test split's.
    from torch_cnn.plots import plot_history  # matplotlib: only once there is a run to plot

    plot_history(
        history, out / CURVES_FILE, title=curves_title(setup.name, out, history.epochs),
        val_label="validation (the test split)",
    )  # fmt: skip
    files = [name for name in RUN_FILES if (out / name).exists()]
    print(
        f"{setup.name}: test_accuracy {result.accuracy:.4f}  test_loss {result.loss:.4f}  "
        f"({plural(result.num_samples, 'test image')}, {plural(history.epochs, 'epoch')}, "
        f"{sum(history.seconds):.1f}s)"
    )
    print(f"wrote {out}/: {', '.join(files)}")
    return 0


def _fit(
    args: argparse.Namespace,
    setup: _Setup,
    train: Data,
    val: Data | None,
    device: torch.device,
    classes: list[str],
) -> History:
    """``fit`` with the command's options; ``--out`` holds its checkpoint."""
    return fit(
        setup.model, train, val, epochs=args.epochs, batch_size=args.batch_size,
        optimizer=setup.optimizer, seed=args.seed, device=device,
        channels_last=args.channels_last, bf16=args.bf16, compile=args.compile,
        augment=args.augment, checkpoint_dir=Path(args.out), resume=args.resume,
        class_names=classes,
    )  # fmt: skip


def _cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What the command adds to ``fit``'s run config (``History.config``) in ``metrics.json``."""
    return {
        "validation": "none" if args.no_val else "test split",
        "resume": args.resume,
        "eval_batch_size": EVAL_BATCH_SIZE,
    }


def _registered(args: argparse.Namespace) -> _Setup:
    """A registered model with seeded weights and ``--optimizer`` (Keras's Adam, lr 1e-3)."""
    model = seeded_model(args.model, args.seed)
    name = args.optimizer or DEFAULT_OPTIMIZER
    lr = KERAS_ADAM_LEARNING_RATE if args.lr is None else args.lr
    optimizer = create_optimizer(name, model.parameters(), lr=lr)
    settings = {"optimizer_name": name, "lr": lr, "loss": "cross_entropy(logits)"}
    return _Setup(model, optimizer, args.model, settings, "")


def _from_keras(args: argparse.Namespace) -> _Setup:
    """The model of ``--from-keras FILE`` and the optimizer to continue it with.

    The file's own optimizer and state when it was saved compiled (``--optimizer`` overrides,
    ``--lr`` sets the learning rate of either), else ``--optimizer``'s default, Keras's Adam.
    """
    from torch_cnn.convert.optimizer import optimizer_from_keras_state, read_keras_optimizer

    path = args.from_keras
    model, source = load_keras_file(path)
    trainable = [p for p in model.parameters() if p.requires_grad]
    saved = None if args.optimizer else read_keras_optimizer(source)
    if saved is not None:
        config, variables = saved
        optimizer: torch.optim.Optimizer = optimizer_from_keras_state(model, config, variables)
        if args.lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = args.lr
        kind = type(optimizer).__name__
        steps = int(optimizer.param_groups[0]["step"]) if optimizer.param_groups else 0
        origin = f"the file's ({kind}, {steps} steps taken in Keras)"
        name = "keras_file"
    else:
        name = args.optimizer or DEFAULT_OPTIMIZER
        hparams = {} if args.lr is None else {"lr": args.lr}
        optimizer = create_optimizer(name, trainable, **hparams)
        origin = f"{name} (the file carries none)" if not args.optimizer else name
    lr = optimizer.param_groups[0]["lr"] if optimizer.param_groups else None
    objective = objective_for(model)
    settings = {
        "source": os.fspath(path),
        "optimizer_name": name,
        "optimizer_source": origin,
        "lr": lr,
        "loss": objective.describe(),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    note = f" (converted from {path}; optimizer: {origin})"
    return _Setup(model, optimizer, model.name, settings, note)


def load_keras_file(path: str | os.PathLike[str]) -> tuple[TorchCnnModel, Any]:
    """The converted model of a Keras file (read without TensorFlow), and where its optimizer
    is read from (the file itself)."""
    import torch_cnn

    model = torch_cnn.from_keras(path)
    if not isinstance(model, KerasGraph | KerasStyleNet):  # pragma: no cover - from_keras's types
        raise TypeError(f"{path}: converted to a {type(model).__name__}")
    return model, path


def _input_chw(model: TorchCnnModel) -> tuple[int | None, ...]:
    if isinstance(model, KerasGraph):
        return model.input_spec.torch_shape
    return model.input_shape


def _fit_images(ds: data.Cifar10, model: TorchCnnModel) -> tuple[Data, Data, str]:
    """The train and test splits as the model takes them, and a note on what was done.

    A model whose input has another height or width gets the images resized (bilinear,
    half-pixel centres: ``tf.image.resize``'s default) as float32 in [0, 1].
    """
    shape = _input_chw(model)
    if len(shape) != 3 or shape[0] != 3:
        raise ValueError(
            f"model {model.name!r} takes inputs of shape (N, {', '.join(map(str, shape))}); "
            "CIFAR-10 images are (N, 3, 32, 32): train it through the Python API on data of "
            "its own (torch_cnn.fit(model, (images, labels)))"
        )
    size = (shape[1] or 32, shape[2] or 32)
    if size == (32, 32):
        return ds.train, ds.test, ""

    def resized(split: data.Split) -> tuple[torch.Tensor, torch.Tensor]:
        x = data.to_float(split.images)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False), split.labels

    note = f", resized to {size[0]}×{size[1]} (bilinear)"
    return resized(ds.train), resized(ds.test), note


def class_names(classes: list[str], k: int) -> list[str]:
    """The data's class names for a model with ``k`` classes (extra outputs: ``class_10``, …).

    >>> class_names(["cat", "dog"], 3)
    ['cat', 'dog', 'class_2']
    """
    return [classes[i] if i < len(classes) else f"class_{i}" for i in range(k)]


def cmd_evaluate(args: argparse.Namespace) -> int:
    path = existing(args.checkpoint, "file or directory")
    if is_weights_only_path(path):
        raise CliError(
            f"{path} holds Keras weights but no architecture: evaluate a model file (the "
            ".keras or .h5 the model was saved as), or port the weights into one first "
            f"(torch-cnn port {path} model.safetensors --model ...)"
        )
    if path.is_dir() and not (path / "config.json").is_file():  # not an unzipped .keras
        raise CliError(f"--checkpoint {path} is a directory; expected a .safetensors file, a "
                       f"Keras model file or {CHECKPOINT_NAME}")  # fmt: skip
    device = parse_device(args.device)
    model: TorchCnnModel
    if path.suffix == ".safetensors" or is_keras_path(path):  # a Keras file: converted
        model = load_model(str(path), device=device, command="evaluate")
    else:
        model = model_from_checkpoint(path, device=device)
    root = data.resolve_data_dir(args.data_dir)
    ds = data.load_cifar10(root)
    try:
        _, test, _ = _fit_images(ds, model)  # resized for another input size
        check_labels(ds.test.labels, objective_for(model))
    except (ValueError, TypeError) as exc:  # a model CIFAR-10 cannot feed
        raise CliError(f"{path}: {exc}") from exc
    result = evaluate(model, test, batch_size=args.batch_size, device=device)
    print(
        f"{model.name} from {path} on {plural(result.num_samples, 'test image')} in {root} "
        f"({device})"
    )
    print(f"test_loss {result.loss:.4f}")
    print(f"test_accuracy {result.accuracy:.4f}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and ``evaluate`` on a ``parser.add_subparsers()`` object."""
    _add_train(subparsers)
    _add_evaluate(subparsers)


def _add_train(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = command(
        subparsers,
        "train",
        cmd_train,
        summary="train a model on CIFAR-10 and write a run directory",
        description=[
            "Train with the seeds' recipe: Keras's Adam (lr 1e-3), batch 32, shuffled every "
            "epoch, images divided by 255; the test split serves as validation data (val_* "
            "in the history are test-set numbers; --no-val turns them off). --from-keras "
            "FILE trains a converted Keras model instead, continuing with the optimizer and "
            "state the file was saved with, if any.",
            f"--out receives {HISTORY_FILE}, {METRICS_FILE}, the curves and confusion plots, "
            f"{WEIGHTS_FILE} and {CHECKPOINT_NAME} (what --resume continues from). A run "
            "whose loss becomes NaN or infinite stops (as Keras's TerminateOnNaN), writes "
            "its history and exits with status 1.",
            "  torch-cnn train --model model_cifar10 --out runs/a",
            "  torch-cnn train --from-keras my_model.keras --epochs 3 --out runs/b",
        ],
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", choices=list_models(), help="a registered model, seeded")
    which.add_argument(
        "--from-keras",
        metavar="FILE",
        help="a Keras model file (.keras, .h5, or an unzipped .keras directory) to convert "
        "and keep training",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the run directory to write")
    add_data_dir(p, "CIFAR10_DIR, else the cache, downloaded there if missing")
    _add_recipe(p)


def _add_recipe(p: argparse.ArgumentParser) -> None:
    """``train``'s options that set the recipe: epochs, batch, seed, optimizer, device, ..."""
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=DEFAULT_EPOCHS,
        help="epochs to train, counting those a --resume continues (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=KERAS_FIT_BATCH_SIZE,
        help="images per step (per rank under torchrun: the global batch is N times this; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=seed,
        default=0,
        help="seed of the weights, shuffling and augmentation (default: %(default)s)",
    )
    p.add_argument(
        "--optimizer",
        choices=list_optimizers(),
        help="keras_adam (default), keras_adamw, keras_sgd, keras_rmsprop: Keras's optimizers "
        "exactly; torch_adam*: torch.optim.Adam with Keras's hyperparameters. With "
        "--from-keras: instead of the file's optimizer and state",
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        help=f"learning rate, a finite number > 0 (default: {KERAS_ADAM_LEARNING_RATE}; with "
        "--from-keras, the file's optimizer's, or the optimizer's default)",
    )
    add_device(p)
    p.add_argument(
        "--resume", action="store_true", help=f"continue from DIR/{CHECKPOINT_NAME} if it exists"
    )
    p.add_argument("--no-val", action="store_true", help="no per-epoch validation on the test set")
    p.add_argument("--augment", action="store_true", help="random 4-pixel shifts and flips")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (opt-in: not parity)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")


def _add_evaluate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = command(
        subparsers,
        "evaluate",
        cmd_evaluate,
        summary="test loss and accuracy of a saved model or training checkpoint",
        description=[
            "Evaluate a model.safetensors (torch_cnn.save, torch-cnn convert or train), a "
            "Keras model file (converted first, as torch-cnn convert does) or a training "
            f"checkpoint ({CHECKPOINT_NAME}) on CIFAR-10's test split: loss and accuracy, as "
            "Keras's model.evaluate. Images are resized (bilinear) for a model of another "
            "input size.",
            "  torch-cnn evaluate --checkpoint runs/a/model.safetensors",
            "  torch-cnn evaluate --checkpoint my_model.keras",
        ],
    )
    p.add_argument(
        "--checkpoint",
        required=True,
        metavar="FILE",
        help=f"a .safetensors file, a Keras model file (.keras, .h5, or an unzipped .keras "
        f"directory) or a training run's {CHECKPOINT_NAME}",
    )
    add_data_dir(p, "CIFAR10_DIR, else the cache")
    add_device(p)
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=EVAL_BATCH_SIZE,
        help="images per forward pass (default: %(default)s)",
    )
