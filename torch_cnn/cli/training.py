"""``torch-cnn train`` and ``torch-cnn evaluate``: the training recipe as two subcommands.

``add_commands(subparsers)`` registers both on the ``torch-cnn`` parser (``cli.build_parser``).
A training run writes everything it produced, with its provenance, into ``--out``
(the run directory: see ``torch_cnn.train.run``).

Several processes: ``torchrun --nproc-per-node=N -m torch_cnn train ...`` trains with
``DistributedDataParallel`` (gloo on the CPU, nccl on CUDA with one GPU per rank; see
``torch_cnn.distributed`` and ``train.fit``). ``--batch-size`` is then the batch of each
rank: the global batch is N times larger. Only rank 0 prints and writes into ``--out``;
``metrics.json`` records ``world_size`` and ``backend``.

Validation data: the seed notebooks as kept in ``shared/seeds`` end before their ``fit``
call, so their validation set is not known. Like the usual Keras CIFAR-10 recipe
(``validation_data=(X_test, y_test)``), the test split is used as validation data, so
``val_*`` in the history are test-set numbers; ``--no-val`` turns them off.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from torch_cnn import data, distributed
from torch_cnn.env import describe_device, parse_device
from torch_cnn.models import TorchCnnModel
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
from torch_cnn.train.run import run_metrics, write_run_dir

DEFAULT_EPOCHS = 10


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
    model = seeded_model(args.model, args.seed)
    if main:
        ranks = f", {world} ranks ({backend}), global batch {args.batch_size * world}"
        print(
            f"training {args.model} for {args.epochs} epochs on {len(ds.train)} images from "
            f"{root} ({describe_device(device)}, seed {args.seed}"
            f"{ranks if world > 1 else ''})",
            file=sys.stderr,
        )
    try:
        history = fit(
            model,
            ds.train,
            None if args.no_val else ds.test,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=create_optimizer(args.optimizer, model.parameters(), lr=args.lr),
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
        model, ds.test, batch_size=EVAL_BATCH_SIZE, bf16=args.bf16, channels_last=args.channels_last
    )
    if not main:
        return 0
    metrics = run_metrics(
        result,
        ds.classes,
        framework="torch",
        model=args.model,
        seconds=sum(history.seconds),
        epoch_seconds=history.seconds,
        device=describe_device(device),
        seed=args.seed,
        data_dir=str(root),
        num_train=len(ds.train),
        config={**history.config, **_cli_settings(args)},
        world_size=world,
        backend=backend,
    )
    files = write_run_dir(
        out, model, history, result, ds.classes, metrics, title=f"{args.model} test"
    )
    print(
        f"{args.model}: test_accuracy {result.accuracy:.4f}  test_loss {result.loss:.4f}  "
        f"({result.num_samples} test images, {history.epochs} epochs, "
        f"{sum(history.seconds):.1f}s)"
    )
    print(f"wrote {out}/: {', '.join(files)}")
    return 0


def _cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What the command adds to ``fit``'s run config (``History.config``) in ``metrics.json``."""
    return {
        "optimizer_name": args.optimizer,
        "lr": args.lr,
        "loss": "cross_entropy(logits)",
        "validation": "none" if args.no_val else "test split",
        "resume": args.resume,
        "eval_batch_size": EVAL_BATCH_SIZE,
    }


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
    test = data.load_cifar10(root).test
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
        "epoch, images /255; the test split serves as validation data.",
    )
    p.add_argument("--model", required=True, choices=list_models())
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
        default="keras_adam",
        help="keras_adam (default), keras_adamw, keras_sgd, keras_rmsprop: Keras's optimizers "
        "exactly; torch_adam*: torch.optim.Adam with Keras's hyperparameters",
    )
    p.add_argument(
        "--lr", type=float, default=KERAS_ADAM_LEARNING_RATE, help="learning rate (%(default)s)"
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
