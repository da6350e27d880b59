"""The empanada-dl 0.1.7 virtual environment that benchmarks and interop tests compare against.

Created on first use (about a minute, 1.8 GB) under ``benchmarks/.venv-empanada`` (gitignored), or
where ``EMPANADA_PEER_VENV`` points, following /work/shared/notes/empanada-dl-baseline.md:
empanada-dl's declared pins cannot install on Python 3.11 (numpy==1.22) and it never imports
torchvision, so it goes in with ``--no-deps`` next to a CPU torch and its real runtime dependencies.
A lock file keeps two processes (e.g. parallel test workers) from building it at once.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("EMPANADA_PEER_VENV", HERE / ".venv-empanada"))
DEPS = [
    "numpy<2",
    "numba",
    "zarr<3",
    "opencv-python-headless<4.11",
    "scikit-image",
    "albumentations==1.3.1",
    "dask",
    "connected-components-3d",
    "matplotlib",
    "pyyaml",
    "cztile<2",  # cztile 2 removed a module empanada/inference/tile.py imports
    "imagecodecs",
    "tqdm",
    "scipy",
    "psutil",
    "tifffile",
]
# pip messages that mean the package registry could not be reached (the only reason to skip)
OFFLINE_MARKERS = (
    "No matching distribution",
    "Could not find a version",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectionError",
)


class PeerUnavailable(RuntimeError):
    """The peer environment could not be built because the package registry is unreachable."""


def peer_python(quiet: bool = False) -> Path:
    """Path of the peer venv's python, creating the venv first if needed.

    Raises :class:`PeerUnavailable` when pip cannot reach the package registry, RuntimeError for
    any other failure.
    """
    py = VENV / "bin" / "python"
    ready = VENV / ".ready"
    if ready.exists():
        return py
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.exists():
            return py
        if not quiet:
            print(f"creating {VENV} with empanada-dl 0.1.7 (about a minute) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        for args in (["torch==2.13.0"], ["--no-deps", "empanada-dl==0.1.7"], DEPS):
            r = subprocess.run(pip + args, capture_output=True, text=True)
            if r.returncode:
                tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
                msg = f"pip install {' '.join(args)} failed in {VENV}: {' | '.join(tail)}"
                if any(m in (r.stderr + r.stdout) for m in OFFLINE_MARKERS):
                    raise PeerUnavailable(msg)
                raise RuntimeError(msg)
        ready.touch()
    return py


if __name__ == "__main__":
    print(peer_python())
