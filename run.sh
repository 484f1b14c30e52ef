#!/usr/bin/env bash
# Gradient Workbench: run an experiment with the .venv that setup.sh created.
#
#   ./run.sh                                   experiments/default.py (the MNIST optimizer comparison)
#   ./run.sh epochs=1 seeds=[0]                experiments/default.py with overrides
#   ./run.sh NAME [key=value ...]              experiments/NAME.py
#   ./run.sh experiments/NAME.py [key=value]   any config
#   ./run.sh --list | --resume RUN_DIR         everything else main.py accepts
set -euo pipefail
cd "$(dirname "$0")"
VENV_PY=".venv/bin/python"
if [ ! -x "$VENV_PY" ]; then
    echo "No .venv here yet: run ./setup.sh first (it creates .venv, installs the requirements and fetches MNIST)." >&2
    exit 1
fi
export PYTHONUTF8=1
# No config among the arguments (nothing, or only key=value overrides and flags such as --no-plot):
# run experiments/default.py with them. --list, --resume and --help go to main.py untouched.
needs_default=1
for arg in "$@"; do
    case "$arg" in
        --list|--resume|--resume=*|-h|--help) needs_default=0; break ;;
        -*|*=*) ;;
        *) needs_default=0; break ;;
    esac
done
[ "$needs_default" = 1 ] && set -- experiments/default.py "$@"
exec "$VENV_PY" main.py "$@"
