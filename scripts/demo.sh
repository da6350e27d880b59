#!/usr/bin/env bash
# Set everything up on a fresh machine (Python 3.9+ with venv; installs into .venv unless PYTHON is set) and run the demo: generated EM-like
# data -> a trained model with validation metrics, in a few CPU minutes. Extra arguments go to
# `empanada-nb demo` (e.g. --data DIR --iterations N --out PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_python.sh
"$PY" -m pip install --disable-pip-version-check -q -e .
"$PY" -m empanada_nb demo "$@"
