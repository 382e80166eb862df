#!/usr/bin/env bash
# One call on a lent GPU: the CUDA tests and the CUDA benchmark, everything written into OUT.
#
#   bash scripts/gpu_check.sh OUT            # on a machine with CUDA (TensorFlow not needed)
#   bash scripts/gpu_check.sh --dry-run OUT  # anywhere: the same steps on the CPU, in seconds
#
# Steps (each under its own time limit; the whole stays under 8 minutes):
#   1. the device: nvidia-smi and torch's view of it          -> OUT/device.txt
#   2. the CUDA tests (pytest -m "cuda and not slow"; the slow ones re-run step 3): parity on the GPU via the stored Keras outputs
#      (parity_tests/golden/), the CUDA paths of the benchmark  -> OUT/pytest_cuda.log, .xml
#   3. the CUDA benchmark, torch_cnn only: fast mode's 50,000-image epoch (bf16, CUDA graph,
#      batch 500; target <= 50 ms) and the default and plain-NCHW paths' throughput
#                                                              -> OUT/model_cifar10_cuda.json,
#                                              OUT/README.md (the block), OUT/benchmark.md
#   4. OUT/summary.txt: each step's exit status and seconds.
# The dry run collects the CUDA tests instead of running them and runs the benchmark's
# --quick mode on the CPU (model_cnn), so that a test can check the whole script here.
# Exit status: 0 when every step passed, else the first failing step's.
set -u -o pipefail

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
if [[ $# -ne 1 ]]; then
    echo "usage: bash scripts/gpu_check.sh [--dry-run] OUT_DIR" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(mkdir -p "$1" && cd "$1" && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=2
unset CI  # no TensorFlow here: the Keras tests skip instead of failing

STATUS=0
: >"$OUT/summary.txt"
step() {  # step NAME LIMIT_S COMMAND...: run it under a time limit, record status and seconds
    local name="$1" limit="$2"
    shift 2
    local t0=$SECONDS rc
    echo "== $name" >&2
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    echo "$name: exit $rc, $((SECONDS - t0)) s (limit $limit s)" | tee -a "$OUT/summary.txt" >&2
    if [[ $rc -ne 0 && $STATUS -eq 0 ]]; then STATUS=$rc; fi
}

if [[ $DRY_RUN -eq 1 ]]; then
    DEVICE=cpu
    MODEL=model_cnn
    PYTEST_ARGS=(--collect-only -q)
    BENCH_ARGS=(--quick --batch-size 8 --large-batch 16 --images 32)
else
    DEVICE=cuda
    MODEL=model_cifar10
    PYTEST_ARGS=(-q -rs)
    BENCH_ARGS=(--repeats 3)
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check: torch sees no CUDA device (use --dry-run to check the script)" >&2
        exit 3
    fi
fi

step device 60 bash -c "
    { nvidia-smi 2>/dev/null || echo 'nvidia-smi: not available'
      \"$PYTHON\" -c 'import torch, torch_cnn
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)
print(\"devices:\", [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
print(\"torch_cnn\", torch_cnn.__version__, torch_cnn.__file__)'
    } >'$OUT/device.txt' 2>&1"

step cuda-tests 150 "$PYTHON" -m pytest -m "cuda and not slow" -p no:cacheprovider "${PYTEST_ARGS[@]}" \
    --junitxml="$OUT/pytest_cuda.xml" tests parity_tests >"$OUT/pytest_cuda.log" 2>&1

# The README block the benchmark fills: an empty one between its markers.
KEY="$MODEL $DEVICE"
printf '# torch_cnn on %s\n\n<!-- bench %s start -->\n<!-- bench %s end -->\n' \
    "$DEVICE" "$KEY" "$KEY" >"$OUT/README.md"
step benchmark 270 "$PYTHON" -m benchmarks --model "$MODEL" --device "$DEVICE" \
    --frameworks torch_cnn --converted "" "${BENCH_ARGS[@]}" \
    --json "$OUT/${MODEL}_${DEVICE}.json" --readme "$OUT/README.md" >"$OUT/benchmark.md"

echo "gpu_check: exit $STATUS; files in $OUT" | tee -a "$OUT/summary.txt" >&2
exit "$STATUS"
