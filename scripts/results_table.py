"""Test accuracy of both seed models in both frameworks, as mean ± sd over seeds (markdown).

Runs ``train_torch.py`` and ``train_keras.py`` for every model × framework × seed into
``--runs-dir/<framework>-<model>-s<seed>/`` (a run whose ``metrics.json`` is already there
is read, not rerun; ``--no-train`` only reads), then prints one table row per model and
framework, with the device and the versions beside it (each run's seconds are in its
``metrics.json``; timings belong to the benchmark, ``torch-cnn bench``):

    python scripts/results_table.py --seeds 0 1 2 --epochs 10 --runs-dir runs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
MODELS = ("model_cnn", "model_cifar10")
FRAMEWORKS = ("torch", "keras", "torch_adam")  # torch_adam: train_torch.py with torch.optim.Adam
SCRIPT = {"torch": "train_torch.py", "keras": "train_keras.py", "torch_adam": "train_torch.py"}
EXTRA_ARGS = {"torch_adam": ["--optimizer", "torch_adam"]}
LABEL = {
    "torch": "torch_cnn, KerasAdam",
    "keras": "Keras 3 on TensorFlow",
    "torch_adam": "torch_cnn, torch.optim.Adam",
}


def run_dir(runs: Path, framework: str, model: str, seed: int) -> Path:
    return runs / f"{framework}-{model}-s{seed}"


def train(framework: str, model: str, seed: int, out: Path, args: argparse.Namespace) -> None:
    cmd = [
        sys.executable,
        str(SCRIPTS / SCRIPT[framework]),
        *EXTRA_ARGS.get(framework, []),
        "--model", model,
        "--seed", str(seed),
        "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size),
        "--out", str(out),
    ]  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def mean_sd(values: Sequence[float]) -> str:
    """``'45.23 ± 0.81'`` in percent; the sd is the sample sd (n - 1), ``—`` for one run."""
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f} ± —"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def table(rows: list[tuple[str, str, list[dict[str, Any]]]]) -> str:
    lines = [
        "| model | framework | runs | epochs | test accuracy (%) | test loss | device |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for model, framework, runs in rows:
        if not runs:
            continue
        acc = [r["test_accuracy"] for r in runs]
        loss = statistics.fmean(r["test_loss"] for r in runs)
        devices = sorted({r["device"] for r in runs})
        epochs = sorted({len(r["epoch_seconds"]) for r in runs})
        lines.append(
            f"| {model} | {LABEL[framework]} | {len(runs)} | {'/'.join(map(str, epochs))} | "
            f"{mean_sd(acc)} | {loss:.4f} | {'; '.join(devices)} |"
        )
    return "\n".join(lines)


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description or __doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=["torch", "keras"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-dir", help="CIFAR-10 python-batch directory (default: CIFAR10_DIR)")
    parser.add_argument("--runs-dir", default="runs", help="where run directories live (runs/)")
    parser.add_argument("--no-train", action="store_true", help="only read existing runs")
    return parser


Rows = list[tuple[str, str, list[dict[str, Any]]]]


def check_run(
    out: Path, metrics: dict[str, Any], model: str, seed: int, args: argparse.Namespace
) -> None:
    """A run read from disk must be the run asked for; one that is not stops the table."""
    config = metrics.get("config", {})
    asked = {"model": model, "seed": seed, "epochs": args.epochs, "batch_size": args.batch_size}
    ran = {key: config.get(key) for key in asked}
    if ran != asked:
        raise SystemExit(
            f"{out} holds another run ({ran}) than the one asked for ({asked}); remove it or "
            "choose another --runs-dir"
        )


def collect(args: argparse.Namespace) -> tuple[Rows, dict[str, str]]:
    """Every (model, framework) with its runs' ``metrics.json``, training the missing ones."""
    runs_dir = Path(args.runs_dir)
    rows: Rows = []
    versions: dict[str, str] = {}
    for model in args.models:
        for framework in args.frameworks:
            found = []
            for seed in args.seeds:
                out = run_dir(runs_dir, framework, model, seed)
                metrics_file = out / "metrics.json"
                if not metrics_file.is_file() and not args.no_train:
                    train(framework, model, seed, out, args)
                if metrics_file.is_file():
                    metrics = json.loads(metrics_file.read_text())
                    check_run(out, metrics, model, seed, args)
                    found.append(metrics)
                    versions.update(metrics["versions"])
                else:
                    print(f"note: no run in {out}", file=sys.stderr)
            rows.append((model, framework, found))
    return rows, versions


def footer(args: argparse.Namespace, versions: dict[str, str]) -> str:
    seeds = ", ".join(map(str, args.seeds))
    return f"Mean ± sample sd over seeds {seeds}; " + ", ".join(
        f"{k} {v}" for k, v in sorted(versions.items())
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rows, versions = collect(args)
    print(table(rows))
    print(f"\n{footer(args, versions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
