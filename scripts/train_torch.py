"""Train one seed model with torch_cnn: the torch half of the Keras-vs-torch comparison.

The recipe is the seeds': Adam (Keras's, lr 1e-3), batch 32, 10 epochs, shuffled every
epoch, both splits divided by 255, the test split as validation data. The loss is
cross-entropy from logits for both models (for ``model_cnn`` that is seed 000's categorical
cross-entropy on its softmax, computed stably). It is ``torch-cnn train``; the run directory
holds ``history.json`` and ``metrics.json`` in the schema ``train_keras.py`` writes too.

    python scripts/train_torch.py --model model_cnn --seed 0 --out runs/torch-model_cnn-s0
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from torch_cnn.cli import main as cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """``torch-cnn train ARGV``: the same options, and the same one-line errors."""
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
