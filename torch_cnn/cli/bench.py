"""``torch-cnn bench``: the benchmark, which lives in the repository's ``benchmarks/``.

The command is the repository's ``benchmarks.cli`` (also ``python -m benchmarks``), imported
when the parser is built so that ``torch-cnn bench --help`` shows its options. An installed
wheel has no ``benchmarks``: there the command says where it lives and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

BENCH_NOT_INSTALLED = (
    "torch-cnn bench: error: the benchmark is not part of the installed package; it lives in the "
    "repository's benchmarks/: in a checkout, run `python -m benchmarks --help`"
)


def _import_benchmarks_cli() -> ModuleType | None:
    """The repository's ``benchmarks.cli``, or None where there is none (an installed wheel).

    Importable from a checkout's root; elsewhere looked for beside ``torch_cnn/`` (an
    editable install of a checkout, whose ``torch-cnn`` runs from anywhere).
    """
    try:
        import benchmarks.cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", "benchmarks.cli"):
            raise  # the benchmark is there but cannot load: say so, not "not installed"
        root = Path(__file__).resolve().parents[2]  # the checkout holding torch_cnn/
        if str(root) in sys.path or not (root / "benchmarks" / "cli.py").is_file():
            return None
        sys.path.append(str(root))
        return _import_benchmarks_cli()
    return benchmarks.cli


def _cmd_bench_not_installed(args: argparse.Namespace) -> int:
    print(BENCH_NOT_INSTALLED, file=sys.stderr)
    return 2


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bench``: the repository's benchmark, imported only when the parser is built."""
    bench_cli = _import_benchmarks_cli()
    if bench_cli is not None:
        bench_cli.add_command(sub)
        return
    # Without it, any arguments lead to the one-line message: '-' is no option prefix here,
    # so that argparse takes `--quick` as an argument instead of refusing it.
    p = sub.add_parser(
        "bench", help="the benchmark (in the repository only)", add_help=False, prefix_chars="+"
    )
    p.add_argument("args", nargs="*")
    p.set_defaults(func=_cmd_bench_not_installed)
