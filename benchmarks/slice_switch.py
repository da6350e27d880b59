"""Scroll-to-painted time of the Viewer in a real browser (JupyterLab + headless Chromium).

    python benchmarks/slice_switch.py [--size 1024] [--slices 64] [--dtype uint8]

Opens a notebook with a ``size x size x slices`` volume and a label layer, focuses the viewer and
measures, in the browser, the time from the input event (a key press) to the end of the frame that
paints the new slice (image + labels), for:

- stepping one slice at a time at several intervals (browser cache + prefetch of neighbours),
- random jumps to slices that are not cached (a full round trip through the kernel).

Needs jupyterlab, playwright (the Python package only) and Chromium at /usr/bin/chromium
(or $EMPANADA_NB_CHROMIUM). Server and browser run on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "browser"))

from harness import JupyterServer, NotebookSession, launch_browser, missing_requirements  # noqa: E402

CELL = """
import numpy as np
from empanada_nb.widgets import Viewer
rng = np.random.default_rng(0)
base = rng.integers(0, {hi}, size=({size}, {size}), dtype=np.{dtype})
vol = np.stack([np.roll(base, 3 * z, 1) for z in range({slices})])
lab = np.zeros(vol.shape, np.uint32)
for k in range(200):
    y, x = rng.integers(0, {size} - 40, 2)
    lab[:, y:y + 30, x:x + 30] = k + 1
v = Viewer(vol, labels=lab)
v
"""


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def run_steps(page, n, interval_ms, key="ArrowRight"):
    page.evaluate("() => { window.__enb.views[0].stats.switches = []; }")
    for _ in range(n):
        page.keyboard.press(key)
        page.wait_for_timeout(interval_ms)
    page.wait_for_timeout(500)
    return page.evaluate("() => window.__enb.views[0].stats.switches")


def run_jumps(page, n, n_slices, seed=0):
    import random

    rnd = random.Random(seed)
    page.evaluate("() => { window.__enb.views[0].stats.switches = []; }")
    for _ in range(n):
        # drop the browser cache so that every jump is a miss, then jump with a key (End/Home)
        target = rnd.randrange(n_slices)
        page.evaluate(
            """(t) => { const v = window.__enb.views[0]; v.slices.clear();
                                   v.goto(v.axis, t, new Event('jump')); }""",
            target,
        )
        page.wait_for_function(
            "(t) => document.querySelector('.enb-viewer').dataset.shown === 'xy:' + t", arg=target, timeout=10_000
        )
        page.wait_for_timeout(300)
    return page.evaluate("() => window.__enb.views[0].stats.switches")


def summary(name, sw):
    ms = [s["ms"] for s in sw]
    parts = {
        k: round(statistics.median([s[k] for s in sw if k in s]), 1)
        for k in ("wait", "decode", "paint")
        if any(k in s for s in sw)
    }
    hits = sum(1 for s in sw if s["hit"])
    return {
        "case": name,
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "max_ms": round(max(ms), 1),
        "cache_hits": hits,
        "median_parts_ms": parts,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--slices", type=int, default=64)
    ap.add_argument("--dtype", default="uint8", choices=["uint8", "uint16"])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    why = missing_requirements()
    if why:
        sys.exit(f"cannot run: {why}")
    from playwright.sync_api import sync_playwright

    hi = 256 if args.dtype == "uint8" else 65536
    server = JupyterServer().start()
    results = []
    try:
        server.write_notebook("bench.ipynb", [CELL.format(size=args.size, slices=args.slices, dtype=args.dtype, hi=hi)])
        with sync_playwright() as p:
            ctx, _ = launch_browser(p)
            page = ctx.new_page()
            nb = NotebookSession(page, server, "bench.ipynb").open()
            nb.run_all()
            mid = args.slices // 2
            page.wait_for_function(
                f"() => document.querySelector('.enb-viewer') && "
                f"document.querySelector('.enb-viewer').dataset.shown === 'xy:{mid}'",
                timeout=180_000,
            )
            page.click(".enb-overlay")
            page.evaluate("() => window.__enb.views[0].goto('xy', 0, null)")
            page.wait_for_timeout(1000)
            for interval in (100, 50, 30):
                page.evaluate("() => window.__enb.views[0].goto('xy', 0, null)")
                page.wait_for_timeout(800)
                sw = run_steps(page, min(args.steps, args.slices - 1), interval)
                results.append(summary(f"step every {interval} ms", sw))
            page.evaluate("() => { const s = window.__enb.views[0].stats; s.rtts = []; s.renders = []; }")
            results.append(summary("random jump, cache cleared (kernel round trip)", run_jumps(page, 20, args.slices)))
            page.evaluate("() => { const v = window.__enb.views[0]; v.model.set('prefetch', 0); }")
            results.append(summary("random jump, cache cleared, no prefetch", run_jumps(page, 20, args.slices, seed=1)))
            st = page.evaluate("() => window.__enb.views[0].stats")
            print(
                "request->data ms: median {:.1f} p95 {:.1f}; draw ms: median {:.1f} p95 {:.1f}".format(
                    statistics.median(st["rtts"]),
                    pct(st["rtts"], 95),
                    statistics.median(st["renders"]),
                    pct(st["renders"], 95),
                )
            )
            ctx.close()
    finally:
        server.stop()
    print(f"slice {args.size}x{args.size} {args.dtype} + uint32 labels, {args.slices} slices, 127.0.0.1")
    for r in results:
        print(
            f"  {r['case']:<48} n={r['n']:<3} median {r['median_ms']:>6} ms  p95 {r['p95_ms']:>6} ms  "
            f"max {r['max_ms']:>6} ms  hits {r['cache_hits']}"
            + (f"  {r['median_parts_ms']}" if r["median_parts_ms"] else "")
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
