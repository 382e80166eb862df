"""How long float32 training follows Keras: torch_cnn, and Keras with XLA, against Keras.

For each starting point (weight seed), 50 Adam steps on the first 50 training batches of
CIFAR10_DIR in float32, three ways: Keras (``train_on_batch``), Keras compiled with XLA,
and torch_cnn with ``KerasAdam``. Prints how many leading steps each of the last two keeps
the loss and every weight tensor within 1e-4 (relative) of Keras: the README's table under
Training parity. Needs TensorFlow; about a minute per seed for model_cifar10 on 2 cores.

    CIFAR10_DIR=../shared/data/cifar-10-batches-py python scripts/float32_agreement.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from keras_ref.side_by_side import N_STEPS, float32_agreement, keras_steps, torch_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="model_cifar10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 2024])
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("give --data-dir or set CIFAR10_DIR")
    data_dir = Path(args.data_dir)
    rows = {"torch_cnn vs Keras": [], "Keras with XLA vs Keras": []}
    for seed in args.seeds:
        _, reference = keras_steps(data_dir, args.model, "float32", xla=False, seed=seed)
        _, xla = keras_steps(data_dir, args.model, "float32", xla=True, seed=seed)
        ours = torch_steps(data_dir, args.model, "float32", seed=seed)
        rows["torch_cnn vs Keras"].append(float32_agreement(ours, reference))
        rows["Keras with XLA vs Keras"].append(float32_agreement(xla, reference))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]}" for k, v in rows.items()), flush=True)
    print(f"\n| start (weight seed) | {' | '.join(map(str, args.seeds))} |")
    print("| --- |" + " ---: |" * len(args.seeds))
    for label, values in rows.items():
        print(f"| {label}: steps within 1e-4 (of {N_STEPS}) | {' | '.join(map(str, values))} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
