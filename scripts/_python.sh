# Sourced by demo.sh and test.sh: choose the Python to install into and run with.
# $PYTHON if the user sets one; otherwise the project's own virtual environment .venv (created on
# first use, reused after), so a stock system Python (PEP 668, Debian 12, Ubuntu 23.04+) works too.
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
else
  if [ ! -x .venv/bin/python ]; then
    echo "creating the project virtual environment .venv (set PYTHON=... to use another Python)"
    python3 -m venv .venv || {
      echo "error: python3 -m venv failed; install your system's venv package (Debian/Ubuntu: apt-get install python3-venv) or set PYTHON=/path/to/python" >&2
      exit 2
    }
  fi
  PY=.venv/bin/python
fi
