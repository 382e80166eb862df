"""Accuracy parity: both seed models, torch_cnn and Keras, the seeds' recipe, 5 seeds each.

Trains (or reads, when a run directory already holds its ``metrics.json``) every model ×
seed with

- ``torch``: ``torch_cnn`` with ``KerasAdam`` (``train_torch.py``, the default of ``fit``),
- ``keras``: Keras on TensorFlow (``train_keras.py``),
- ``torch_adam``: ``torch_cnn`` with ``torch.optim.Adam`` and Keras's hyperparameters
  (``train_torch.py --optimizer torch_adam``), to show what the optimizer difference costs,

10 epochs at batch 32 on the same data, then prints the mean ± sd table and checks
|mean_torch − mean_keras| ≤ 2 points for each model (exit status 1 when not):

    python scripts/accuracy_parity.py --runs-dir runs

The two frameworks draw different initial weights and batch orders from the same seed
number, so this compares the distributions of outcomes, not individual runs
(``parity_tests/test_fit_parity.py`` checks a single run step for step).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_table import build_parser, collect, footer, table

MAX_GAP_POINTS = 2.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(seeds=[0, 1, 2, 3, 4], frameworks=["torch", "keras", "torch_adam"])
    args = parser.parse_args(argv)
    rows, versions = collect(args)
    print(table(rows))
    print(f"\n{footer(args, versions)}\n")
    means = {
        (model, framework): 100 * statistics.fmean(r["test_accuracy"] for r in runs)
        for model, framework, runs in rows
        if runs
    }
    ok = True
    for model in args.models:
        missing = [f for f in ("torch", "keras") if (model, f) not in means]
        if missing:  # no runs to compare is a failed check, not a passed one
            print(f"{model}: FAIL, no {' or '.join(missing)} runs to compare")
            ok = False
            continue
        gap = means[model, "torch"] - means[model, "keras"]
        verdict = "ok" if abs(gap) <= MAX_GAP_POINTS else "FAIL"
        ok &= verdict == "ok"
        line = f"{model}: mean_torch − mean_keras = {gap:+.2f} points (≤ {MAX_GAP_POINTS:g}: {verdict})"
        if (model, "torch_adam") in means:
            line += f"; torch.optim.Adam − Keras = {means[model, 'torch_adam'] - means[model, 'keras']:+.2f}"
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
