"""Benchmark torch_cnn against Keras (on TensorFlow and on torch): ``torch-cnn bench`` as a script.

    python scripts/bench.py --model model_cifar10 --device cpu --json bench.json

The benchmark is the package ``benchmarks/`` beside ``torch_cnn`` (``python -m benchmarks``
runs it too); see its ``__init__`` for what is measured and how, ``--help`` for the options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's benchmarks/

from benchmarks.cli import main

if __name__ == "__main__":
    sys.exit(main())
