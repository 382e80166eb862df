"""The side-by-side scripts: train_torch.py and train_keras.py write the same JSON, and
results_table.py lays them side by side, refusing runs that are not the ones asked for."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import ROOT, load_script, run_python, small_data_dir


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    return run_python(str(ROOT / "scripts" / name), *args, env=env)


@pytest.mark.slow
def test_both_frameworks_write_the_same_schema_and_the_table_reads_them(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path
) -> None:
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    runs = tmp_path / "runs"
    where = ["--models", "model_cnn", "--seeds", "0"]
    where += ["--data-dir", str(data_dir), "--runs-dir", str(runs)]
    proc = _script("results_table.py", *where, "--epochs", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {}
    for framework in ("torch", "keras"):
        run = runs / f"{framework}-model_cnn-s0"
        history = json.loads((run / "history.json").read_text())
        metrics = json.loads((run / "metrics.json").read_text())
        assert list(history) == ["loss", "accuracy", "val_loss", "val_accuracy"]
        assert all(len(v) == 1 for v in history.values())
        records[framework] = metrics
    torch_keys, keras_keys = set(records["torch"]), set(records["keras"])
    assert torch_keys == keras_keys, torch_keys ^ keras_keys
    for metrics in records.values():
        assert (metrics["num_train"], metrics["num_test"]) == (200, 120)
        assert metrics["config"]["epochs"] == 1 and metrics["config"]["batch_size"] == 32
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| model_cnn |")]
    assert len(rows) == 2 and "| 1 | 1 |" in rows[0] and "Keras 3 on TensorFlow" in rows[1]
    # The runs on disk are read, not repeated; a request they do not match is refused.
    again = _script("results_table.py", *where, "--epochs", "1", "--no-train")
    assert again.returncode == 0 and proc.stdout.endswith(again.stdout)  # the same table
    other = _script("results_table.py", *where, "--epochs", "2", "--no-train")
    assert other.returncode != 0 and "holds another run" in other.stderr


def test_accuracy_parity_fails_without_runs_to_compare(tmp_path: Path) -> None:
    proc = _script("accuracy_parity.py", "--runs-dir", str(tmp_path), "--no-train", "--seeds", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL, no torch or keras runs to compare" in proc.stdout


def _orders_seen_by_fit(
    keras: ModuleType, fit_input: Any, epochs: int, **fit_kw: Any
) -> list[list[int]]:
    """The sample order each epoch of Keras's ``fit`` trains on (x holds each sample's index)."""
    import numpy as np
    import tensorflow as tf

    seen: list[int] = []

    class Recorder(keras.Model):  # type: ignore[misc]
        def train_step(self, data: Any) -> dict[str, Any]:
            seen.extend(int(v) for v in np.asarray(data[0]).ravel())
            return {"loss": tf.constant(0.0)}

    inputs = keras.Input((1,))
    model = Recorder(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="adam", loss="mse", run_eagerly=True)
    model.fit(*fit_input, epochs=epochs, verbose=0, **fit_kw)
    n = len(seen) // epochs
    return [seen[i * n : (i + 1) * n] for i in range(epochs)]


def test_train_keras_reshuffles_every_epoch_where_seeded_fit_does_not(keras: ModuleType) -> None:
    """After keras.utils.set_random_seed, fit(shuffle=True) repeats one order every epoch
    (Keras 3.15 on TensorFlow); train_keras.py's epoch_batches draws a new one each time,
    reproducibly, as the seeds' unseeded fit and torch_cnn.fit do."""
    import numpy as np

    train_keras = load_script("train_keras")
    x = np.arange(10, dtype="float32").reshape(10, 1)
    y = np.zeros(10, dtype="float32")

    keras.utils.set_random_seed(3)
    plain = _orders_seen_by_fit(keras, (x, y), 3, batch_size=4, shuffle=True)
    assert plain[0] == plain[1] == plain[2]  # Keras's behaviour, which the script works around

    runs = []
    for _ in range(2):
        keras.utils.set_random_seed(3)
        dataset = train_keras.epoch_batches(x, y, 4, 3)
        runs.append(_orders_seen_by_fit(keras, (dataset,), 3, shuffle=False))
    assert runs[0] == runs[1]  # reproducible
    orders = runs[0]
    assert all(sorted(o) == list(range(10)) for o in orders)  # each epoch sees every sample once
    assert len({tuple(o) for o in orders}) == 3  # and in a new order


@pytest.mark.slow
def test_training_scripts_name_a_missing_data_directory(keras: ModuleType, tmp_path: Path) -> None:
    for script in ("train_torch.py", "train_keras.py"):
        args = ["--model", "model_cnn", "--data-dir", str(tmp_path / "nowhere")]
        proc = _script(script, *args, "--out", str(tmp_path / "run"))
        assert proc.returncode == 2, (script, proc.stderr[-2000:])
        assert f"error: CIFAR-10 directory {tmp_path / 'nowhere'} does not exist" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
