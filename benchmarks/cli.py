"""The benchmark's command line: ``python -m benchmarks``, ``scripts/bench.py`` and, through
``add_command``, ``torch-cnn bench`` (which ``torch_cnn.cli`` imports lazily)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import benchmarks
from benchmarks.accuracy import ACCURACY_EPOCHS, ACCURACY_SEEDS, accuracy_check
from benchmarks.common import (
    DEVICES,
    FRAMEWORKS,
    IMAGES_PER_REPEAT,
    LARGE_BATCH,
    QUICK,
    REPEATS,
    WARMUP_STEPS,
    atomic_write_json,
)
from benchmarks.converted import CONVERTED_MODELS
from benchmarks.hardware import forward_flops, load_average, machine
from benchmarks.prepare import IO_IMAGES
from benchmarks.report import format_accuracy, format_report, readme_key, write_readme_section
from benchmarks.runner import run
from benchmarks.torch_side import RunConfig, parse_overrides, profile_infer, profile_train
from torch_cnn import data
from torch_cnn.registry import list_models
from torch_cnn.train import KERAS_FIT_BATCH_SIZE, seeded_model

# The package docstring's first paragraph, without its reStructuredText markup.
DESCRIPTION = (benchmarks.__doc__ or "").split("\n\n")[0].replace("``", "")
PROFILE_STEPS = 20
PROFILE_CALLS = {"infer": 10, "latency": 200}
QUICK_LATENCY_CALLS = 5


def _csv(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(s.strip() for s in text.split(",") if s.strip())
        bad = [s for s in items if s not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices)}; received {text!r}"
            )
        return items

    return parse


def positive_int(text: str) -> int:
    """An integer ≥ 1 (batch sizes, counts), refused at parse time otherwise."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1; received {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer; received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 0; received {text!r}")
    return value


def _check_outputs(args: argparse.Namespace) -> None:
    """``--json`` and ``--readme`` writable before minutes of timing (not after)."""
    for flag, path in (("--json", args.json), ("--readme", args.readme)):
        if not path:
            continue
        p = Path(path)
        if p.is_dir():
            raise SystemExit(f"torch-cnn bench: error: {flag} {p} is a directory")
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise SystemExit(
                f"torch-cnn bench: error: {flag} {p}: {parent} is not a writable directory"
            )
        if flag == "--readme" and not p.is_file():
            raise SystemExit(f"torch-cnn bench: error: --readme {p} does not exist")


def _overrides(text: str) -> dict[str, Any]:
    """``parse_overrides`` for argparse: its message, not argparse's 'invalid value'."""
    try:
        return parse_overrides(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Every option of ``torch-cnn bench`` on ``p``: what is timed here, the rest in
    ``_add_mode_arguments``."""
    p.add_argument(
        "--model", default="model_cifar10", choices=list_models(),
        help="the seed model timed (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--device", default="cpu", choices=DEVICES, help="default %(default)s")
    p.add_argument(
        "--json",
        metavar="FILE",
        help="write the records (a JSON list) to FILE; with --accuracy, fast mode's training "
        "record at its batch carries the check as 'accuracy_check'",
    )
    p.add_argument(
        "--frameworks",
        type=_csv(FRAMEWORKS),
        default=FRAMEWORKS,
        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (default: all; Keras ones "
        "are skipped with a note when not installed)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=KERAS_FIT_BATCH_SIZE,
        help="small batch (%(default)s)",
    )
    p.add_argument(
        "--large-batch",
        type=positive_int,
        help=", ".join(f"{b} on {d}" for d, b in LARGE_BATCH.items()) + " by default",
    )
    p.add_argument(
        "--images",
        type=positive_int,
        help="images per repeat: "
        + ", ".join(f"{n:,} on {d}" for d, n in IMAGES_PER_REPEAT.items())
        + " by default",
    )
    p.add_argument("--repeats", type=positive_int, default=REPEATS, help="default %(default)s")
    p.add_argument(
        "--warmup-steps", type=non_negative_int, default=WARMUP_STEPS, help="default %(default)s"
    )
    p.add_argument(
        "--threads", type=positive_int, help="intra-op threads (default: torch's, one per core)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0,
        help="seed of the weights and inputs every framework shares (default %(default)s)",
    )  # fmt: skip
    _add_mode_arguments(p)


def _add_mode_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``torch-cnn bench`` that choose the modes, checks and reports."""
    p.add_argument(
        "--fast",
        type=_overrides,
        default={},
        metavar="KEY=VALUE,...",
        help="override fast mode's settings, e.g. bf16=false,compile_train=true,batch_size=512",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"a few steps per path ({QUICK}): checks that every path runs, not for numbers",
    )
    p.add_argument(
        "--accuracy",
        action="store_true",
        help=f"also train {ACCURACY_EPOCHS} epochs on CIFAR-10 in parity and fast mode "
        f"(seeds {ACCURACY_SEEDS}; minutes) and compare test accuracy",
    )
    p.add_argument(
        "--accuracy-seeds", type=positive_int, default=len(ACCURACY_SEEDS), metavar="N",
        help="with --accuracy: how many seeds each mode trains (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--data-dir",
        help="CIFAR-10 python-batch directory (default: CIFAR10_DIR): the accuracy check's data "
        "and the images each row's max |Δ| against Keras is measured on (seeded random images "
        "without it)",
    )
    p.add_argument(
        "--converted",
        type=lambda s: tuple(m for m in s.split(",") if m),
        default=CONVERTED_MODELS,
        metavar="NAMES",
        help="converted models timed for inference and latency beside --model "
        f"(default {','.join(CONVERTED_MODELS)}; '' for none)",
    )
    p.add_argument("--no-latency", action="store_true", help="leave out the batch-1 latency rows")
    p.add_argument("--keep-files", metavar="DIR", help="keep the shared model files in DIR")
    p.add_argument("--profile", action="store_true", help="append an operator profile of training")
    p.add_argument(
        "--readme",
        metavar="FILE",
        help="also write the report into FILE, between the lines "
        "'<!-- bench MODEL DEVICE start -->' and '<!-- bench MODEL DEVICE end -->'",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run ``args`` ask for; ``--quick`` sets the repeats and warm-up, and the sizes
    that were not given."""
    quick = QUICK if args.quick else {}
    return RunConfig(
        model=args.model,
        device=args.device,
        frameworks=tuple(args.frameworks),
        small_batch=args.batch_size,
        large_batch=args.large_batch or quick.get("large_batch"),
        images=args.images or quick.get("images"),
        repeats=quick.get("repeats", args.repeats),
        warmup_steps=quick.get("warmup_steps", args.warmup_steps),
        threads=args.threads,
        seed=args.seed,
        fast_overrides=args.fast,
        converted=tuple(args.converted),
        latency=not args.no_latency,
        latency_calls=QUICK_LATENCY_CALLS if args.quick else 0,
    )


def _is_checked_fast_train(rec: Mapping[str, Any], accuracy: Mapping[str, Any]) -> bool:
    """The record the accuracy check speaks for: fast mode's training at the checked batch."""
    return (rec["framework"], rec["mode"], rec["task"]) == ("torch_cnn", "fast", "train") and (
        rec["batch_size"] == accuracy["fast_settings"]["batch_size"]
    )


def _profile_lines(config: RunConfig) -> list[str]:
    """``--profile``: the top operators of default inference (the large batch and batch 1) and
    of default and fast training, as fenced text: where the time of each target's row goes."""
    lines: list[str] = []
    for what, batch in (("infer", config.large), ("latency", 1)):
        print(f"profile: default {what} batch {batch}", file=sys.stderr, flush=True)
        lines += [
            "",
            f"Profile: default inference at batch {batch}, {PROFILE_CALLS[what]} calls:",
            "",
            "```",
            profile_infer(config, batch, PROFILE_CALLS[what]).rstrip(),
            "```",
        ]
    for mode, batch in (
        ("default", config.small_batch),
        ("fast", config.settings("fast").batch_size),
    ):
        print(f"profile: {mode} train batch {batch}", file=sys.stderr, flush=True)
        lines += [
            "",
            f"Profile: {mode} training at batch {batch}, {PROFILE_STEPS} steps:",
            "",
            "```",
            profile_train(config, mode, batch, PROFILE_STEPS).rstrip(),
            "```",
        ]
    return lines


def _write_json(
    path: str,
    records: list[dict[str, Any]],
    info: Mapping[str, Any],
    command: str,
    accuracy: Mapping[str, Any] | None,
) -> None:
    """``--json``: the records, each with the machine and command, the accuracy where it speaks."""
    for rec in records:
        rec["machine"] = {k: info[k] for k in ("cpu", "logical_cpus", "threads", "date")}
        rec["command"] = command
        if accuracy is not None and _is_checked_fast_train(rec, accuracy):
            rec["accuracy_check"] = accuracy
    atomic_write_json(path, records)
    print(f"wrote {len(records)} records to {path}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark, print the markdown report, write ``--json`` and ``--readme``."""
    config = config_from_args(args)
    _check_outputs(args)
    threads = torch.get_num_threads()
    try:
        return _bench(args, config)
    finally:
        torch.set_num_threads(threads)  # a command run in process leaves no global setting


def _bench(args: argparse.Namespace, config: RunConfig) -> int:
    if config.threads:  # before machine(), which measures the matmul peak with them
        torch.set_num_threads(config.threads)
    argv = getattr(args, "argv", None)
    command = shlex.join(["torch-cnn", *(["bench", *argv] if argv is not None else sys.argv[1:])])
    info = machine(config.torch_device, config.intra_op_threads)
    dataset, data_dir = None, None
    if args.accuracy:  # find (or download) and read the data now, not after minutes of timing
        data_dir = data.resolve_data_dir(args.data_dir)
        dataset = data.load_cifar10(data_dir)
    print(f"benchmarking {config.model} on {info['device']}", file=sys.stderr, flush=True)
    keep = Path(args.keep_files) if args.keep_files else None
    records, notes, manifest = run(
        config,
        info["gemm_gflops"],
        data_dir=str(data_dir or args.data_dir or "") or None,
        keep=keep,
    )
    if manifest:
        info["prepared_inputs"] = f"{IO_IMAGES} {manifest['inputs']}"
    extra: list[str] = []
    accuracy = None
    if args.accuracy:
        print("accuracy check", file=sys.stderr, flush=True)
        seeds = tuple(range(args.accuracy_seeds))
        accuracy = accuracy_check(config, data_dir, dataset=dataset, seeds=seeds)
        extra += format_accuracy(accuracy)
    if args.profile:
        extra += _profile_lines(config)
    info["load_average_end"] = load_average()
    flops = {r["model"]: int(r["flops_per_image"]) for r in records if "flops_per_image" in r}
    flops.setdefault(config.model, forward_flops(seeded_model(config.model, 0)))
    report = format_report(
        records, notes, config, info, command, flops_per_image=flops, extra=extra, accuracy=accuracy
    )
    print(report, end="")
    if args.readme:
        write_readme_section(args.readme, readme_key(config), report)
        print(f"wrote the report into {args.readme}", file=sys.stderr)
    if args.json:
        _write_json(args.json, records, info, command, accuracy)
    failed = [n for n in notes if "failed" in n.lower()]
    if failed:  # a row that could not be measured is a failure, not a footnote
        print(
            f"torch-cnn bench: {len(failed)} path(s) failed: {'; '.join(failed)}", file=sys.stderr
        )
        return 1
    return 0


def add_command(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``bench`` on a ``parser.add_subparsers()`` object (``torch-cnn bench``)."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark training and inference against Keras (TensorFlow and torch backends)",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks`` and ``scripts/bench.py``: the ``bench`` command on its own."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION)
    add_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    return cmd_bench(args)
