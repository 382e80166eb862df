"""Train one seed model with torch_cnn: the torch half of the Keras-vs-torch comparison.

The recipe is the seeds': Adam (Keras's, lr 1e-3), batch 32, 10 epochs, shuffled every
epoch, both splits divided by 255, the test split as validation data. The loss is
cross-entropy from logits for both models (for ``model_cnn`` that is seed 000's categorical
cross-entropy on its softmax, computed stably). It is ``torch-cnn train``; the run directory
holds ``history.json`` and ``metrics.json`` in the schema ``train_keras.py`` writes too.

    python scripts/train_torch.py --model model_cnn --seed 0 --out runs/torch-model_cnn-s0
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from torch_cnn.cli_train import add_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="train_torch.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
