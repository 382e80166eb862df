"""Benchmark torch_cnn against Keras (on TensorFlow and on torch): ``torch-cnn bench`` as a script.

    python scripts/bench.py --model model_cifar10 --device cpu --json bench.json

See ``torch_cnn/bench.py`` for what is measured and how; ``--help`` for the options.
"""

from __future__ import annotations

import sys

from torch_cnn.bench import main

if __name__ == "__main__":
    sys.exit(main())
