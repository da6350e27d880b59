"""Fault stress: SIGKILL and SIGINT every writer many times and tabulate what each kill left on disk.

    python benchmarks/faults.py [--kills 20] [--ops train checkpoint model_save patch_save segment]

Runs the signal loops of tests/test_faults.py (which assert after every kill that nothing
half-written remains under a final name, and that the next write removes every temporary) with
``EMPANADA_NB_FAULT_KILLS=--kills``, then prints, per writer and signal, the exit statuses and the
temporaries, half pairs and complete outputs found after the kills.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20, help="signals per writer and signal kind")
    ap.add_argument("--ops", nargs="+", default=["train", "checkpoint", "model_save", "patch_save", "segment"])
    args = ap.parse_args()
    report = Path(tempfile.mkdtemp()) / "faults.jsonl"
    env = dict(os.environ, EMPANADA_NB_FAULT_KILLS=str(args.kills), EMPANADA_NB_FAULT_REPORT=str(report))
    sel = " or ".join(args.ops)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_faults.py",
        "-k",
        f"signal_loop and ({sel})",
    ]
    rc = subprocess.run(cmd, cwd=ROOT, env=env).returncode
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    table = collections.defaultdict(list)
    for r in rows:
        table[(r["op"], r["signal"])].append(r)
    print("\n| writer | signal | kills | exit statuses | kills leaving temporaries | half pairs | output after kill |")
    print("|---|---|---|---|---|---|---|")
    for (op, sig), rs in sorted(table.items()):
        exits = collections.Counter(r["exitcode"] for r in rs)
        tmp = sum(bool(r["leftovers"]) for r in rs)
        half = sum(r.get("half_pairs", 0) for r in rs)
        complete = sum(
            bool(
                r.get("model") or r.get("store") or r.get("checkpoint_iteration") or r.get("pairs") or "iteration" in r
            )
            for r in rs
        )
        print(f"| {op} | {sig} | {len(rs)} | {dict(exits)} | {tmp} | {half} | {complete} |")
    print(
        "\nevery kill: nothing half-written under a final name; after the next write: no temporaries"
        if rc == 0
        else "\nFAILED: see the pytest output above"
    )
    return rc


if __name__ == "__main__":
    sys.exit(main())
