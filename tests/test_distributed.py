"""Training on two processes: torchrun, gloo on loopback, DistributedDataParallel (torch_cnn.distributed).

Each test starts ``torchrun --standalone --nproc-per-node=2`` in a subprocess. The workers
are this module run as a script (``-m tests.test_distributed WORKER ...``, see the bottom),
or the ``torch-cnn train`` command itself. Every launch costs ~10 s on a 2-core machine,
most of it importing torch in the agent and in each worker, so the tests launch as few as
they can.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers import KEYS, assert_same, small_data_dir, subset
from torch_cnn import data, distributed
from torch_cnn.cli import main as cli_main
from torch_cnn.train import CHECKPOINT_NAME, evaluate, fit, load_checkpoint, seeded_model

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with gloo is not available",
)

ROOT = Path(__file__).resolve().parents[1]
WORLD = 2
LAUNCH_TIMEOUT = 120  # seconds; a hang fails the test instead of stalling the suite

# The float64 equivalence run: 97 images in global batches of 2 × 16 = 32 end with a batch
# of 1, which leaves rank 1 an empty shard; 2 epochs with augmentation are 8 steps.
PER_RANK_BATCH = 16
N_TRAIN, N_VAL, EPOCHS, SEED = 97, 101, 2, 3
FAILURE = "rank 1 fails on purpose"
ARTIFACTS = sorted(
    [
        "confusion.png",
        "curves.png",
        "history.json",
        CHECKPOINT_NAME,
        "metrics.json",
        "model.safetensors",
    ]
)


def _torchrun(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """``torchrun --standalone --nproc-per-node=2 ARGS`` with one thread per worker; (result, seconds)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    t0 = time.perf_counter()
    result = subprocess.run(
        [*cmd, f"--nproc-per-node={WORLD}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=LAUNCH_TIMEOUT,
        check=False,
    )
    return result, time.perf_counter() - t0


@pytest.fixture
def one_thread() -> Any:
    """The in-process reference runs on one thread, as each torchrun worker does.

    On a 2-core machine busy with the two workers (or anything else), two OpenMP threads
    per process slow training down several times over.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"torchrun failed:\n{result.stdout}\n{result.stderr}"


def _float64_run(
    ds: data.Cifar10, device: torch.device | str, batch_size: int, **kw: Any
) -> tuple[Any, Any]:
    model = seeded_model("model_cnn", kw.pop("init_seed", 0), dtype=torch.float64)
    train, val = subset(ds.train, N_TRAIN), subset(ds.test, N_VAL)
    kw = {"epochs": EPOCHS, "seed": SEED, "augment": True, "progress": False, **kw}
    history = fit(model, train, val, batch_size=batch_size, device=device, **kw)
    return model, history


# ---------------------------------------------------------------------------------------------
# Without processes


def test_launch_from_env() -> None:
    assert distributed.launch_from_env({"PATH": "/bin"}) is None
    launch = distributed.launch_from_env({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert launch == distributed.Launch(rank=3, local_rank=1, world_size=4) and not launch.is_main
    with pytest.raises(ValueError, match=r"received only RANK \(missing LOCAL_RANK, WORLD_SIZE\)"):
        distributed.launch_from_env({"RANK": "0"})
    with pytest.raises(ValueError, match="RANK=2, LOCAL_RANK=0, WORLD_SIZE=2"):
        distributed.launch_from_env({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="must be integers; received RANK='x'"):
        distributed.launch_from_env({"RANK": "x", "LOCAL_RANK": "0", "WORLD_SIZE": "2"})


def test_devices_and_backends() -> None:
    launch = distributed.Launch(rank=3, local_rank=1, world_size=4)
    assert distributed.rank_device("cuda", launch) == torch.device("cuda", 1)
    assert distributed.rank_device("cuda:1", launch) == torch.device("cuda", 1)
    assert distributed.rank_device("cpu", launch) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"cuda:1 for LOCAL_RANK=1\); received device cuda:0"):
        distributed.rank_device("cuda:0", launch)
    assert distributed.backend_for("cuda:1") == "nccl" and distributed.backend_for("cpu") == "gloo"


def test_single_process_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in distributed.LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with distributed.process_group("cpu") as device:
        assert device == torch.device("cpu") and not distributed.is_initialized()
    assert (distributed.world_size(), distributed.rank(), distributed.backend()) == (1, 0, None)
    t = torch.ones(3)
    assert distributed.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0, 1.0]
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    assert distributed.run_in_process_group(lambda dev: dev.type, "cpu") == "cpu"
    model = seeded_model("model_cnn", 0)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8)
    with pytest.raises(RuntimeError, match=r"fit\(distributed=True\) needs an initialised"):
        fit(model, (x, y), epochs=1, device="cpu", progress=False, distributed=True)
    with pytest.raises(RuntimeError, match=r"evaluate\(distributed=True\) needs an initialised"):
        evaluate(model, (x, y), distributed=True)


# ---------------------------------------------------------------------------------------------
# Two processes


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_combined_batch(
    cifar10_dir: Path, tmp_path: Path, one_thread: None
) -> None:
    result, _ = _torchrun("-m", "tests.test_distributed", "fit", str(tmp_path), str(cifar10_dir))
    _check(result)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    # One process, global batch 32: the same permutation, augmentation and mean loss.
    ds = data.load_cifar10(cifar10_dir)
    single, history = _float64_run(ds, "cpu", batch_size=PER_RANK_BATCH * WORLD)
    reference = evaluate(single, subset(ds.test, N_VAL), batch_size=PER_RANK_BATCH)

    for r, got in enumerate(ranks):
        assert_same(got["weights"], ranks[0]["weights"], f"rank {r} vs rank 0")  # bit for bit
        deltas = [
            (got["weights"][k] - v).abs().max().item() for k, v in single.state_dict().items()
        ]
        assert max(deltas) <= 1e-10, f"rank {r}: max |Δ| {max(deltas):.3g} vs one process"
        assert got["steps"] == 8 and got["weights"]["fc.weight"].dtype == torch.float64
        assert list(got["history"]) == KEYS
        assert got["history"]["accuracy"] == history["accuracy"]
        assert got["history"]["val_accuracy"] == history["val_accuracy"]
        for key in ("loss", "val_loss"):
            assert got["history"][key] == pytest.approx(history[key], rel=1e-12, abs=0)
        # Evaluation covers the 101 images once (shards of 51 and 50), the same on every rank.
        ev = got["eval"]
        assert ev["num_samples"] == N_VAL and ev["confusion"] == reference.confusion
        assert ev["loss"] == pytest.approx(reference.loss, rel=1e-12, abs=0)
        assert ev["accuracy"] == reference.accuracy
        # Cut after epoch 1 and resumed (from another init: the checkpoint wins): bit for bit.
        assert_same(got["resumed"], got["weights"], f"rank {r} resumed")
        assert got["resumed_history"] == got["history"]
    # Rank 0 alone wrote the checkpoints (a write on rank 1 raises in the worker); they record
    # the world size and backend.
    ckpt = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)
    assert_same(ckpt["model"], ranks[0]["weights"], "checkpoint")
    config = ckpt["config"]
    assert (config["world_size"], config["batch_size"], config["global_batch_size"]) == (2, 16, 32)
    assert config["backend"] == "gloo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut", "full", "rank0.pt", "rank1.pt"]


@pytest.mark.slow
def test_torchrun_cli_writes_every_artifact_and_resumes(
    cifar10_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    data_dir = small_data_dir(cifar10_dir, tmp_path / "data")
    out = tmp_path / "run"
    common = ["--model", "model_cnn", "--data-dir", str(data_dir), "--device", "cpu", "--seed", "1"]
    argv = ["-m", "torch_cnn", "train", *common, "--batch-size", "16", "--out", str(out)]
    result, _ = _torchrun(*argv, "--epochs", "1")
    _check(result)
    assert sorted(p.name for p in out.iterdir()) == ARTIFACTS
    assert result.stdout.count("wrote ") == 1  # rank 0 alone prints and writes
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["world_size"], metrics["backend"]) == (2, "gloo")
    assert metrics["config"]["global_batch_size"] == 32 and metrics["num_test"] == 120
    assert sum(map(sum, metrics["confusion_matrix"])) == 120  # the test set, once
    history = json.loads((out / "history.json").read_text())
    assert list(history) == KEYS and all(len(v) == 1 for v in history.values())

    # --resume under torchrun continues the distributed run.
    result, _ = _torchrun(*argv, "--epochs", "2", "--resume")
    _check(result)
    resumed = json.loads((out / "history.json").read_text())
    assert len(resumed["loss"]) == 2 and resumed["loss"][0] == history["loss"][0]
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 2

    # One process may continue it with the same global batch (32), not with another one.
    single = ["train", *common, "--out", str(out), "--resume"]
    assert cli_main([*single, "--epochs", "3", "--batch-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "batch_size=16 × world_size=2 (global batch 32); received batch_size=16" in err
    assert cli_main([*single, "--epochs", "3", "--batch-size", "32"]) == 0
    continued = json.loads((out / "history.json").read_text())
    assert continued["loss"][:2] == resumed["loss"] and len(continued["loss"]) == 3
    assert json.loads((out / "metrics.json").read_text())["world_size"] == 1


@pytest.mark.slow
def test_failing_rank_stops_the_run_with_its_error(tmp_path: Path) -> None:
    # Rank 1 raises at its second step of a run that would otherwise never end, while rank 0
    # waits for it in DDP's gradient all-reduce (and fails with "Connection closed by peer").
    # A hang is bounded by _torchrun's timeout (subprocess.TimeoutExpired fails the test);
    # how fast the run stops depends on the machine's load and is not asserted.
    result, _ = _torchrun("-m", "tests.test_distributed", "fail", str(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # torchrun's summary lists rank 1's failure with the traceback it recorded.
    summary = output.partition("Root Cause")[2]
    assert re.search(r"rank\s*:\s*1\b", summary) and FAILURE in summary, output


# ---------------------------------------------------------------------------------------------
# The workers torchrun starts: python -m tests.test_distributed WORKER ARGS


def _forbid_writes_off_rank_0() -> None:
    """On ranks other than 0, any checkpoint write raises: only rank 0 may write."""
    from torch_cnn.train import checkpoint

    def refuse(path: Any, write: Any) -> None:
        raise AssertionError(f"rank {distributed.rank()} tried to write {path}")

    if distributed.rank() != 0:
        checkpoint.atomic_write = refuse  # type: ignore[assignment]


def _worker_fit(out: Path, data_dir: Path) -> None:
    def train(device: torch.device) -> None:
        _forbid_writes_off_rank_0()
        ds = data.load_cifar10(data_dir)
        steps: list[tuple[int, int]] = []
        model, history = _float64_run(
            ds,
            device,
            PER_RANK_BATCH,
            checkpoint_dir=out / "full",
            on_batch_end=lambda epoch, step: steps.append((epoch, step)),
        )
        _float64_run(ds, device, PER_RANK_BATCH, epochs=1, checkpoint_dir=out / "cut")
        resumed, resumed_history = _float64_run(
            ds, device, PER_RANK_BATCH, init_seed=9, checkpoint_dir=out / "cut", resume=True
        )
        result = evaluate(model, subset(ds.test, N_VAL), batch_size=PER_RANK_BATCH)
        record = {
            "weights": model.state_dict(),
            "history": dict(history),
            "steps": len(steps),
            "resumed": resumed.state_dict(),
            "resumed_history": dict(resumed_history),
            "eval": vars(result),
        }
        torch.save(record, out / f"rank{distributed.rank()}.pt")

    distributed.run_in_process_group(train, "cpu")


def _worker_fail(out: Path) -> None:
    def fail(epoch: int, step: int) -> None:
        if distributed.rank() == 1 and step == 1:
            raise RuntimeError(f"{FAILURE} (epoch {epoch}, step {step})")

    def train(device: torch.device) -> None:
        x, y = torch.rand(64, 3, 32, 32), torch.arange(64) % 10
        model = seeded_model("model_cnn", 0)
        fit(model, (x, y), epochs=10**6, batch_size=4, device=device, on_batch_end=fail)

    distributed.run_in_process_group(train, "cpu")


if __name__ == "__main__":
    workers = {"fit": _worker_fit, "fail": _worker_fail}
    workers[sys.argv[1]](*map(Path, sys.argv[2:]))
