#!/usr/bin/env bash
# Set everything up on a fresh machine (Python 3.9+ with pip) and run the demo: generated EM-like
# data -> a trained model with validation metrics, in a few CPU minutes. Extra arguments go to
# `empanada-nb demo` (e.g. --data DIR --iterations N --out PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m pip install --disable-pip-version-check -q -e .
"$PY" -m empanada_nb demo "$@"
