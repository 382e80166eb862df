"""The side-by-side scripts: train_torch.py and train_keras.py write the same JSON, and
results_table.py lays them side by side, refusing runs that are not the ones asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from tests.test_train import _small_data_dir

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_both_frameworks_write_the_same_schema_and_the_table_reads_them(
    keras: ModuleType, cifar10_dir: Path, tmp_path: Path
) -> None:
    data_dir = _small_data_dir(cifar10_dir, tmp_path / "data")
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
