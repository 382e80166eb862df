"""`make demo`: the main job.

Builds each Keras reference model, ports its weights into torch_cnn, prints
the Keras-style summary and the max |Δ| of every layer on the real CIFAR-10
test images (``CIFAR10_DIR``, else the cache, downloaded where the network
allows; seeded random images otherwise).
"""

from __future__ import annotations

import sys

from torch_cnn.cli import main

if __name__ == "__main__":
    sys.exit(main(["parity", *sys.argv[1:]]))
