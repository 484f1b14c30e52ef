#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels bench/gpu_check.sh needs on the device
# machine beyond its preinstalled packages: cvxpy and its solvers, for CPython 3.12 manylinux.
# They land in .whl/ (ignored by git); name .whl in the device call's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl
for spec in cvxpy clarabel osqp cffi pycparser; do  # scs (43 MB) is imported only when used
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$spec"
done
ls -la .whl
