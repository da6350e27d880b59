"""Python and the Viewer's JavaScript agree on the wire format and the shared rules, in a real browser.

The same rule lives on both sides of the widget: label colours (``label_color`` and ``codec.js``
``labelColor``), the decoding of label buffers (``encode_labels`` and ``codec.js`` ``decodePart``) and
the clamping of a pick to the volume (``patches.make_pick`` / ``pick_box`` and ``geometry.js``
``clampCenter`` / ``patchStart``, which draws the pick preview). The JavaScript functions are the ones
the widget runs: a debug Viewer exposes them on ``window.__enb.lib``.
"""

import base64

import numpy as np
import pytest
from harness import NotebookSession

from empanada_nb.patches import make_pick, pick_box
from empanada_nb.widgets._serialization import encode_labels, label_color

pytestmark = pytest.mark.browser

CELLS = [
    """
import numpy as np
from empanada_nb.widgets import Viewer
vol = np.zeros((3, 64, 96), np.uint8)
lab = np.zeros((3, 64, 96), np.uint32)
lab[1, 5:30, 10:50] = 70000
lab[1, 40:60, 60:90] = 2**32 - 1
lab[1, 33, :] = np.arange(96)
v = Viewer(vol, labels={"ids": lab}, axis="xy", height=200)
v.slice_index = 1
v
""",
    "quiet = Viewer(vol, debug=False, height=120)\nquiet",
]

# rows and cols of a slice along each axis in a (Z, Y, X) volume (patches.py, "Coordinates")
PLANE_DIMS = {"xy": (1, 2), "xz": (0, 2), "yz": (0, 1)}

DECODE_JS = """async ([meta, b64]) => {
  const bin = atob(b64), big = new Uint8Array(bin.length + 1);
  for (let i = 0; i < bin.length; i++) big[i + 1] = bin.charCodeAt(i);
  // buffers of a comm message arrive as DataViews, not necessarily aligned to the dtype
  const arr = await window.__enb.lib.decodePart(meta, new DataView(big.buffer, 1, bin.length));
  return [arr.constructor.name, Array.from(arr)];
}"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "serialization.ipynb", CELLS, wait_for=(".enb-viewer canvas",)
    )
    session.page.wait_for_function(
        "() => document.querySelector('.enb-viewer').dataset.shown === 'xy:1'", timeout=120_000
    )
    yield session
    session.page.close()


def test_label_colors_agree(nb):
    ids = list(range(1, 400)) + [1001, 2003, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**40 + 12345]
    ids += [5620, 6158, 8668, 8681, 9541, 10071, 13463]  # a channel at x.5 before rounding, or nearly
    js = nb.page.evaluate(
        """(ids) => ids.map((i) => { const c = window.__enb.lib.labelColor(i);
                                     return [c & 255, (c >>> 8) & 255, (c >>> 16) & 255, c >>> 24]; })""",
        ids,
    )
    assert all(c[3] == 255 for c in js)  # opaque; the layer opacity is applied when drawing
    mismatched = [(i, list(label_color(i)), c[:3]) for i, c in zip(ids, js) if list(label_color(i)) != c[:3]]
    assert not mismatched, f"{len(mismatched)} of {len(ids)} ids differ (id, python, js): {mismatched[:5]}"


def _label_arrays():
    rng = np.random.default_rng(0)
    blocks = np.zeros((48, 64), np.int64)
    blocks[4:20, 8:40] = 3
    blocks[25:45, 30:60] = 250
    yield "uint8 runs", blocks
    yield "uint16 runs", blocks * 1000
    yield "uint32 runs", blocks * 1_000_000
    yield "float64 ids beyond uint32", blocks * 2**33 + (blocks > 0)
    yield "small noisy ids (zlib)", rng.integers(0, 3, (48, 64))
    yield "random uint32 ids (raw)", rng.integers(0, 2**32, (32, 48), dtype=np.uint64).astype(np.int64)
    yield "one row", np.arange(1, 301)[None, :]


def test_decoding_agrees(nb):
    encodings = set()
    for name, arr in _label_arrays():
        meta, buf = encode_labels(arr)
        encodings.add(meta["encoding"])
        kind, values = nb.page.evaluate(DECODE_JS, [meta, base64.b64encode(buf).decode()])
        assert kind.lower() == meta["dtype"] + "array", (name, kind, meta)
        np.testing.assert_array_equal(np.array(values, dtype=np.float64), arr.ravel().astype(np.float64), err_msg=name)
    assert encodings == {"rle", "zlib", "raw"}  # every encoding the browser has to read was exercised


def test_slice_message_decoded_as_sent(nb):
    """The label slice that went through the widget's own messages equals the array in the kernel."""
    got = nb.page.evaluate("""() => { const v = window.__enb.views[0];
        const c = v.slices.get('xy:1').labels.get(v.activeLayer().uid); return Array.from(c.arr); }""")
    want = nb.py_json("lab[1].ravel().tolist()")
    assert got == want


def test_pick_clamping_agrees(nb):
    shape = (5, 40, 300)
    values = [-3.7, 0, 0.4, 10, 31.99, 32, 39.9, 45, 150.5, 268.2, 299.6, 320]
    cases, want = [], []
    for axis, index in (("xy", 2), ("xz", 17), ("yz", 299)):
        rd, cd = PLANE_DIMS[axis]
        for size in (16, 64):
            for row in values[::2]:
                for col in values[1::2] + values[::3]:
                    pick = make_pick(axis, index, row, col, size, shape)
                    _, _, r0, r1, c0, c1 = pick_box(pick, shape)
                    centre = (pick["z"], pick["y"], pick["x"])
                    cases.append([row, col, size, shape[rd], shape[cd]])
                    want.append([centre[rd], centre[cd], r0, r1, c0, c1])
    got = nb.page.evaluate(
        """(cases) => cases.map(([row, col, size, ph, pw]) => {
            const L = window.__enb.lib, rc = L.clampCenter(row, size, ph), cc = L.clampCenter(col, size, pw);
            return [rc, cc, ...L.patchStart(rc, size, ph), ...L.patchStart(cc, size, pw)];
        })""",
        cases,
    )
    bad = [(c, w, g) for c, w, g in zip(cases, want, got) if w != g]
    assert not bad, f"{len(bad)} of {len(cases)} picks differ ([row, col, size, rows, cols], python, js): {bad[:5]}"
    assert any(c[4] < c[2] or c[3] < c[2] for c in cases)  # a plane smaller than the patch was among them


def test_debug_flag_gates_the_registry(nb):
    """Without ``debug`` a Viewer leaves no globals behind: only the debug viewer is registered."""
    page = nb.page
    page.wait_for_function("() => document.querySelectorAll('.enb-viewer').length === 2", timeout=60_000)
    assert nb.py_json("[v.debug, quiet.debug]") == [True, False]
    assert page.evaluate("() => window.__enb.views.length") == 1
    assert page.evaluate("() => window.__enb.views[0].stats !== null")
    assert not nb.errors, nb.errors
