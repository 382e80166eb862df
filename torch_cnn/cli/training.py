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
from torch_cnn.train.run import run_metrics, write_run_dir

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


def cmd_train(args: argparse.Namespace) -> int:
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
        print(f"torch-cnn train: error: {exc}", file=sys.stderr)
        return 2
    model = setup.model
    if main:
        ranks = f", {world} ranks ({backend}), global batch {args.batch_size * world}"
        print(
            f"training {setup.name}{setup.note} for {args.epochs} epochs on {len(ds.train)} "
            f"images from {root}{resized} ({describe_device(device)}, seed {args.seed}"
            f"{ranks if world > 1 else ''})",
            file=sys.stderr,
        )
    try:
        history = fit(
            model,
            train_split,
            None if args.no_val else test_split,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=setup.optimizer,
            seed=args.seed,
            device=device,
            channels_last=args.channels_last,
            bf16=args.bf16,
            compile=args.compile,
            augment=args.augment,
            checkpoint_dir=out,
            resume=args.resume,
        )
    except KeyboardInterrupt:
        if main:
            print(
                f"interrupted: continue with the same command and --resume ({out})",
                file=sys.stderr,
            )
        return 130
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
        result,
        classes,
        framework="torch",
        model=setup.name,
        seconds=sum(history.seconds),
        epoch_seconds=history.seconds,
        device=describe_device(device),
        seed=args.seed,
        data_dir=str(root),
        num_train=len(ds.train),
        config={**history.config, **_cli_settings(args), **setup.settings},
        world_size=world,
        backend=backend,
    )
    files = write_run_dir(out, model, history, result, classes, metrics, title=f"{setup.name} test")
    print(
        f"{setup.name}: test_accuracy {result.accuracy:.4f}  test_loss {result.loss:.4f}  "
        f"({result.num_samples} test images, {history.epochs} epochs, "
        f"{sum(history.seconds):.1f}s)"
    )
    print(f"wrote {out}/: {', '.join(files)}")
    return 0


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
    import torch_cnn

    path = Path(args.checkpoint)
    device = parse_device(args.device)
    if path.suffix == ".safetensors":
        model = torch_cnn.load(path, device=device)
        assert isinstance(model, TorchCnnModel)
    else:
        model = model_from_checkpoint(path, device=device)
    root = data.resolve_data_dir(args.data_dir)
    _, test, _ = _fit_images(data.load_cifar10(root), model)  # resized for another input size
    result = evaluate(model, test, batch_size=args.batch_size, device=device)
    print(f"{model.name} from {path} on {result.num_samples} test images in {root} ({device})")
    print(f"test_loss {result.loss:.4f}")
    print(f"test_accuracy {result.accuracy:.4f}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``train`` and ``evaluate`` on a ``parser.add_subparsers()`` object."""
    p = subparsers.add_parser(
        "train",
        help="train a model on CIFAR-10 (Keras's Adam, batch 32) and write a run directory",
        description="Train with the seeds' recipe: Adam (lr 1e-3), batch 32, shuffled every "
        "epoch, images /255; the test split serves as validation data. --from-keras FILE "
        "trains a converted Keras model instead, with the optimizer and state the file was "
        "saved with, if any.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", choices=list_models())
    which.add_argument(
        "--from-keras",
        metavar="FILE",
        help="a Keras model file (.keras, .h5) to convert and keep training",
    )
    p.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="default %(default)s")
    p.add_argument(
        "--batch-size",
        type=int,
        default=KERAS_FIT_BATCH_SIZE,
        help="images per step (per rank under torchrun: the global batch is N times this); "
        "default %(default)s",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="weights, shuffling, augmentation (%(default)s)"
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
        type=float,
        help=f"learning rate (default {KERAS_ADAM_LEARNING_RATE}; with --from-keras, the file's "
        "optimizer's, or the optimizer's default)",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, … (default: cuda when available)")
    p.add_argument("--resume", action="store_true", help=f"continue from OUT/{CHECKPOINT_NAME}")
    p.add_argument("--no-val", action="store_true", help="no per-epoch validation on the test set")
    p.add_argument("--augment", action="store_true", help="random 4-pixel crops and flips")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate", help="test loss and accuracy of a model.safetensors or training checkpoint"
    )
    p.add_argument("--checkpoint", required=True, help=f"a .safetensors file or {CHECKPOINT_NAME}")
    p.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    p.add_argument("--device", help="cpu, cuda, … (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=EVAL_BATCH_SIZE, help="default %(default)s")
    p.set_defaults(func=cmd_evaluate)
