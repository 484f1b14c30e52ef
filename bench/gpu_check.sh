#!/usr/bin/env bash
# One GPU check in one call: the `cuda` tests, then the GPU benchmarks, and one summary table
# (stdout, and $OUT/gpu_check.md when OUT is set; the full log in $OUT/gpu_check.log).
#
#   bash bench/gpu_check.sh            (on a machine with an NVIDIA GPU; about 5-8 minutes)
#
# Python: $PYTHON, else python3 (the device machine's interpreter, which has torch, torchvision,
# matplotlib, scipy and tqdm). Packages it lacks (cvxpy and its solvers, which the shallow family
# imports) travel as wheels in .whl/: prepare them here with `bash bench/gpu_wheels.sh`, and name
# .whl (and data, for the real MNIST files) in the device call's carry. Without the MNIST files a
# random dataset of MNIST's shape is written first: the timings are the same.
#
# Every step has its own time limit (500 s in all: the whole check fits in 8.5 minutes, one device
# call), so one hung step cannot cost the others; the exit code is the number of failed steps.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT_DIR="${OUT:-$(mktemp -d)}"
LOG="$OUT_DIR/gpu_check.log"
SUMMARY="$OUT_DIR/gpu_check.md"
: > "$LOG"
export PYTHONUNBUFFERED=1 PYTHONUTF8=1

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_check_site .whl/*.whl >>"$LOG" 2>&1 \
        && export PYTHONPATH="/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}"
fi

DATA_DIR=data
if ! "$PY" -c "from workbench import mnist_files; mnist_files.locate('$DATA_DIR', 'mnist')" >/dev/null 2>&1; then
    DATA_DIR="$(mktemp -d)/fake_mnist"
    "$PY" - "$DATA_DIR" >>"$LOG" 2>&1 <<'PYEOF'
import struct, sys
from pathlib import Path
import numpy as np
raw = Path(sys.argv[1]) / "MNIST" / "raw"
raw.mkdir(parents=True)
rng = np.random.default_rng(0)
for stem, n in (("train", 60000), ("t10k", 10000)):
    (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
    (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
print("random MNIST-shaped IDX files in", raw)
PYEOF
fi

rows=()
failed=0
step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name="$1" limit="$2"; shift 2
    local start end code tail_file
    tail_file="$(mktemp)"
    printf '\n===== %s (limit %ss): %s\n' "$name" "$limit" "$*" | tee -a "$LOG"
    start=$(date +%s)
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG" > "$tail_file"
    code=${PIPESTATUS[0]}
    end=$(date +%s)
    local status=ok
    [ "$code" = 0 ] || { status="FAILED (exit $code)"; failed=$((failed + 1)); }
    [ "$code" = 124 ] && status="TIMED OUT after ${limit}s"
    rows+=("| $name | $status | $((end - start)) |")
    { printf '\n### %s\n\n```\n' "$name"; tail -n 25 "$tail_file"; printf '```\n'; } >> "$SUMMARY.parts"
    rm -f "$tail_file"
}

: > "$SUMMARY.parts"
step "environment" 20 bash -c "nvidia-smi -L; $PY -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name(0))'"
step "cuda tests" 130 "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider -rs
step "MNIST epoch vs reference loop" 50 "$PY" bench/mnist_epoch.py --device cuda --data-dir "$DATA_DIR"
step "NewtonSummary refresh backends" 60 "$PY" bench/newton_summary.py --quick
step "sliced W2 10k, JKO N=4000" 50 "$PY" bench/wasserstein.py --device cuda
step "growth statistics" 40 "$PY" bench/growth.py --quick --device cuda
step "runs packed on one GPU" 70 "$PY" bench/parallel.py --gpu-pack "--epochs=1"
step "stacked training: 8, 32, 128 runs" 90 "$PY" bench/stacked.py --device cuda --optimizers adamw --max-steps 200 --data-dir "$DATA_DIR"

{
    echo "# GPU check: $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo 'no git')"
    echo
    echo "| step | status | seconds |"
    echo "| --- | --- | --- |"
    printf '%s\n' "${rows[@]}"
    cat "$SUMMARY.parts"
} > "$SUMMARY"
rm -f "$SUMMARY.parts"
cat "$SUMMARY"
exit "$failed"
