#!/usr/bin/env bash
# Gradient Workbench setup for Linux and macOS: creates .venv, installs torch and requirements.txt,
# and puts MNIST into data/. Safe to run again: every step skips what is already done.
#
#   ./setup.sh [--mnist-dir DIR] [--cifar-dir DIR] [--with-cifar] [cpu] [--with-ray] [--no-pause]
#
#   --mnist-dir DIR   offline MNIST: a folder with the four IDX files (raw or .gz), copied into data/
#                     (same as the environment variable MNIST_DIR=DIR)
#   --cifar-dir DIR   CIFAR-10/100 from a folder with cifar-10-batches-py/, cifar-100-python/ or their
#                     .tar.gz archives, copied into data/ (same as CIFAR_DIR=DIR)
#   --with-cifar      download CIFAR-10 and CIFAR-100 (2 x 170 MB; same as WITH_CIFAR=1); never by default
#   cpu               CPU-only torch (same as TORCH_CPU=1); uses https://download.pytorch.org/whl/cpu
#   --with-ray        also install Ray (requirements-ray.txt) for executor="ray" (same as WITH_RAY=1)
#   --no-pause        never wait for Enter (also when the environment variable CI is set); by
#                     default it waits only when not started from a shell (double-clicked)
#   --pause           wait for Enter at the end even when started from a shell
#
# Environment: PYTHON (interpreter that creates .venv; default python3, then python),
# TORCH_INDEX_URL (pip index for torch/torchvision, e.g. https://download.pytorch.org/whl/cu128),
# TORCH_CPU=1, MNIST_DIR, CIFAR_DIR, WITH_CIFAR=1.
set -Eeuo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
VENV_PY="$ROOT/.venv/bin/python"
export PYTHONUTF8=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

PAUSE=1
[ -n "${CI:-}" ] && PAUSE=0
MNIST_SOURCE=""
TORCH_CPU="${TORCH_CPU:-0}"
WITH_RAY="${WITH_RAY:-0}"
CIFAR_SOURCE="${CIFAR_DIR:-}"
WITH_CIFAR="${WITH_CIFAR:-0}"

usage() { sed -n '2,/^set -/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --no-pause) PAUSE=0 ;;
        --pause) PAUSE=2 ;;
        --mnist-dir)
            [ $# -ge 2 ] || { echo "error: --mnist-dir needs a folder" >&2; exit 2; }
            MNIST_SOURCE="$2"; shift ;;
        --mnist-dir=*) MNIST_SOURCE="${1#--mnist-dir=}" ;;
        --cifar-dir)
            [ $# -ge 2 ] || { echo "error: --cifar-dir needs a folder" >&2; exit 2; }
            CIFAR_SOURCE="$2"; shift ;;
        --cifar-dir=*) CIFAR_SOURCE="${1#--cifar-dir=}" ;;
        --with-cifar) WITH_CIFAR=1 ;;
        cpu|--cpu) TORCH_CPU=1 ;;
        --with-ray) WITH_RAY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# Wait for Enter only when started outside a shell (double-clicked in a file manager), so the window
# stays open; never in CI, with --no-pause, or without a terminal. --pause forces it.
maybe_pause() {
    [ "$PAUSE" = 0 ] && return 0
    [ -t 0 ] && [ -t 1 ] || return 0
    if [ "$PAUSE" = 1 ]; then
        local parent
        parent="$(ps -o comm= -p "$PPID" 2>/dev/null || true)"
        parent="${parent##*/}"
        case "${parent#-}" in
            bash|sh|zsh|fish|dash|ksh|mksh|tcsh|csh|"") return 0 ;;
        esac
    fi
    read -r -p "Press Enter to close..." _ || true
}

step() { printf '\n==> %s\n' "$*"; }

fail() {  # fail CODE [where]
    trap - ERR
    echo >&2
    echo "setup FAILED (exit code $1)${2:+ at $2}." >&2
    echo "Fix the problem above and run ./setup.sh again (it skips what is already done)." >&2
    maybe_pause
    exit "$1"
}
die() { echo "error: $*" >&2; fail 1; }
trap 'fail $? "setup.sh line $LINENO: $BASH_COMMAND"' ERR

version_ok() {  # interpreter runs and is Python >= 3.10
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

# ---- 1. the virtual environment ------------------------------------------------------------------
if [ -x "$VENV_PY" ]; then
    step "Python environment: .venv exists, reusing it"
    if ! version_ok "$VENV_PY"; then
        die ".venv/bin/python does not run or is older than 3.10 (was its Python moved or removed?).
Delete the folder .venv and run ./setup.sh again."
    fi
else
    step "Python environment: creating .venv"
    PY=""
    if [ -n "${PYTHON:-}" ]; then
        if ! version_ok "$PYTHON"; then
            die "PYTHON=$PYTHON does not run or is older than Python 3.10."
        fi
        PY="$PYTHON"
    else
        for candidate in python3 python; do
            if command -v "$candidate" >/dev/null 2>&1 && version_ok "$candidate"; then
                PY="$candidate"; break
            fi
        done
        if [ -z "$PY" ]; then
            die "no Python >= 3.10 found (tried python3, python).
Install one (https://www.python.org/downloads/, your package manager, or 'brew install python'),
or name it explicitly: PYTHON=/path/to/python3.12 ./setup.sh"
        fi
    fi
    if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        die "$PY cannot create virtual environments (the venv/ensurepip modules are missing).
On Debian/Ubuntu: sudo apt install python3-venv   (or python3.X-venv for your version)"
    fi
    echo "using $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    "$PY" -m venv .venv
fi
"$VENV_PY" -m pip install --quiet --upgrade pip || echo "warning: could not upgrade pip (offline?); continuing with $("$VENV_PY" -m pip --version)"

# ---- 2. torch, then the requirements -------------------------------------------------------------
# torch first, so that requirements.txt (torch unpinned) keeps whichever build was chosen here.
TORCH_ARGS=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    TORCH_ARGS=(--index-url "$TORCH_INDEX_URL")
    TORCH_NOTE="from TORCH_INDEX_URL=$TORCH_INDEX_URL"
elif [ "$TORCH_CPU" = 1 ] && [ "$(uname -s)" = Linux ]; then
    TORCH_ARGS=(--index-url https://download.pytorch.org/whl/cpu)
    TORCH_NOTE="CPU-only build (https://download.pytorch.org/whl/cpu)"
else
    TORCH_NOTE="default build from the package index"
fi
step "torch and torchvision: $TORCH_NOTE"
if "$VENV_PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
    echo "already installed: $("$VENV_PY" -c 'import torch; print(torch.__version__)') (to change the build: .venv/bin/python -m pip uninstall -y torch torchvision, then run setup again)"
else
    "$VENV_PY" -m pip install torch torchvision ${TORCH_ARGS[@]+"${TORCH_ARGS[@]}"}
fi

step "requirements.txt"
"$VENV_PY" -m pip install -r requirements.txt

if [ "$WITH_RAY" = 1 ]; then
    step "requirements-ray.txt (Ray, for executor=\"ray\")"
    "$VENV_PY" -m pip install -r requirements-ray.txt
    "$VENV_PY" -c 'import ray; print("ray", ray.__version__)'
fi

step "checking the installation"
CHECK="$("$VENV_PY" -c 'import numpy, scipy, matplotlib, tqdm, cvxpy, torch, torchvision; print(torch.__version__, torch.cuda.is_available())')"
TORCH_VERSION="${CHECK% *}"
CUDA_OK="${CHECK##* }"
echo "imports fine: torch $TORCH_VERSION, CUDA available: $CUDA_OK"
if command -v nvidia-smi >/dev/null 2>&1 && [ "$CUDA_OK" != True ] && [ "$TORCH_CPU" != 1 ]; then
    echo "WARNING: an NVIDIA driver is present (nvidia-smi) but torch $TORCH_VERSION cannot use CUDA." >&2
    echo "         Runs will use the CPU. For a CUDA build: .venv/bin/python -m pip uninstall -y torch torchvision" >&2
    echo "         then TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 ./setup.sh (pick the cuXXX your driver supports)." >&2
fi

# ---- 3. MNIST ------------------------------------------------------------------------------------
step "MNIST into data/"
MNIST_ARGS=(--dest data)
[ -n "$MNIST_SOURCE" ] && MNIST_ARGS+=(--source "$MNIST_SOURCE")
"$VENV_PY" -m workbench.mnist_files "${MNIST_ARGS[@]}"
if [ -n "$CIFAR_SOURCE" ]; then
    step "CIFAR into data/ (from $CIFAR_SOURCE)"
    "$VENV_PY" -m workbench.cifar_files --from "$CIFAR_SOURCE"
elif [ "$WITH_CIFAR" = 1 ]; then
    step "CIFAR into data/ (download)"
    "$VENV_PY" -m workbench.cifar_files --download
fi

# ---- summary -------------------------------------------------------------------------------------
trap - ERR
cat <<EOF

Setup finished.
  python : $("$VENV_PY" -c 'import sys; print(sys.version.split()[0])') ($VENV_PY)
  torch  : $TORCH_VERSION, CUDA available: $CUDA_OK
  data   : $ROOT/data/MNIST/raw
Next: ./run.sh   (or ./run.sh experiments/quick_synthetic.py; tests: .venv/bin/python -m pytest -q)
EOF
maybe_pause
