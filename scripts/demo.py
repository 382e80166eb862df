"""`make demo`: the main job — train ``model_cifar10`` on CIFAR-10 with the seeds' recipe.

Reads CIFAR-10 from ``CIFAR10_DIR`` (``make demo`` points it at ``../shared/data`` when that
sample is there), else the cache directory, downloading it (md5-checked) where the network
allows. Trains 10 epochs with Keras's Adam at batch 32, then prints the test accuracy and
where the curves, the confusion matrix and the weights were written. Extra arguments go to
``torch-cnn train`` (``python scripts/demo.py --epochs 3``; ``--model model_cnn``).
"""

from __future__ import annotations

import sys

from torch_cnn.cli import build_parser, main

DEFAULTS = {"--model": "model_cifar10", "--out": "runs/demo"}

if __name__ == "__main__":
    argv = sys.argv[1:]
    for flag, value in DEFAULTS.items():
        if not any(a == flag or a.startswith(f"{flag}=") for a in argv):
            argv += [flag, value]
    out = build_parser().parse_args(["train", *argv]).out  # as train itself will read it
    status = main(["train", *argv])
    if status == 0:
        print(f"plots: {out}/curves.png, {out}/confusion.png")
    sys.exit(status)
