"""The Viewer's proofreading and label tools in a real JupyterLab page: split at user-placed markers,
filter with the border option, fill holes up to a size, one undo history for all of them, jump to a
label, next free id within a class, and the label count table with its CSV/xlsx export.

Each test clicks in the page, then asserts on the Python objects (the label array, the viewer's traits).
"""

import pytest
from harness import VIEWER_JS_HELPERS, NotebookSession, wait_py

pytestmark = pytest.mark.browser

CELL = """
import tempfile
from pathlib import Path
import numpy as np
from empanada_nb.widgets import Viewer

img = (np.random.default_rng(0).random((4, 128, 128)) * 255).astype(np.uint8)
lab = np.zeros((4, 128, 128), np.uint32)
yy, xx = np.mgrid[:128, :128]
# label 5 on slices 1-2 (off the z faces, border in 3D): two discs joined by a thin bar, a dumbbell to split
bell = ((yy - 60) ** 2 + (xx - 40) ** 2 < 15**2) | ((yy - 60) ** 2 + (xx - 90) ** 2 < 15**2)
bell |= (abs(yy - 60) < 2) & (xx > 40) & (xx < 90)
lab[1:3, bell] = 5
lab[:, 0:6, 0:6] = 7  # touches the border (36 px per slice)
lab[3, 100:104, 100:104] = 9  # small (16 px), interior, only on slice 3
# label 11 on slice 2: a square ring with a 2x2 hole (4 px) and a 5x5 hole (25 px)
lab[2, 10:30, 100:124] = 11
lab[2, 14:16, 104:106] = 0
lab[2, 18:23, 110:115] = 0
orig = lab.copy()
tmp = Path(tempfile.mkdtemp())
v = Viewer(img, labels={"labels": lab}, height=400)
v
"""


@pytest.fixture(scope="module")
def nb(jupyter_server, browser_context):
    session = NotebookSession.start(
        jupyter_server, browser_context, "proofread.ipynb", [CELL], wait_for=(".enb-viewer canvas",)
    )
    page = session.page
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:2'", timeout=120_000)
    page.evaluate(VIEWER_JS_HELPERS)
    yield session
    page.close()


def click_image(page, row, col):
    x, y = page.evaluate("([r, c]) => window.__enbHelpers.toClient(r, c)", [row, col])
    page.mouse.click(x, y)


def test_split_at_markers_then_filter_share_one_undo_history(nb):
    page = nb.page
    page.click("button[data-tool=marker]")
    click_image(page, 60.5, 40.5)
    click_image(page, 60.5, 90.5)
    assert len(wait_py(nb, "len(v.markers) == 2 and v.markers")) == 2
    page.wait_for_function("() => document.querySelector('.enb-marker-count').textContent === '2'", timeout=5_000)
    page.click("button[data-op=split]")
    wait_py(nb, "int(lab[2, 60, 40]) != int(lab[2, 60, 90])")
    left, right = nb.py_json("[int(lab[2, 60, 40]), int(lab[2, 60, 90])]")
    assert 5 in (left, right) and min(left, right) > 0
    # the split is confined to the shown slice, and the markers are used up
    assert nb.py_json("bool((lab[1] == orig[1]).all() and (lab[3] == orig[3]).all())")
    assert nb.py_json("v.markers") == []
    # filter on the whole volume: smaller than 20 px or touching the border
    page.select_option(".enb-scope", "volume")
    page.fill("input[title^='minimum size']", "20")
    page.check(".enb-border")
    page.click("button[data-op=filter]")
    wait_py(nb, "not (lab == 7).any()")
    assert nb.py_json("[bool((lab == 9).any()), bool((lab == 5).any()), bool((lab == 11).any())]") == [
        False,
        True,
        True,
    ]
    # one history: two clicks on undo take back the filter, then the split
    page.click("button[title^='Undo']")
    wait_py(nb, "bool((lab == 7).any() and (lab == 9).any())")
    page.click("button[title^='Undo']")
    wait_py(nb, "bool((lab == orig).all())")
    page.select_option(".enb-scope", "slice")
    page.uncheck(".enb-border")


def test_fill_holes_up_to_a_size(nb):
    page = nb.page
    page.click("button[data-tool=select]")
    page.wait_for_function(
        "() => window.__enb.views[0].labelAt(window.__enb.views[0].activeLayer().uid, {row: 11.5, col: 101.5}) === 11",
        timeout=10_000,
    )
    click_image(page, 11.5, 101.5)
    assert wait_py(nb, "[s['id'] for s in v.selection]") == [11]
    page.select_option(".enb-morph", "fill holes")
    page.fill("input[title^='largest hole']", "10")
    page.click("button[data-op=morph]")
    wait_py(nb, "int(lab[2, 14, 104]) == 11")
    assert nb.py_json("int((lab[2, 18:23, 110:115] == 0).sum())") == 25  # the 25 px hole stays open
    nb.py("v.undo()")
    wait_py(nb, "bool((lab == orig).all())")


def test_jump_to_label_and_next_id_in_class(nb):
    page = nb.page
    nb.py("v.goto('xy', 0)")
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:0'", timeout=10_000)
    page.fill(".enb-jump", "9")
    page.click(".enb-label-tools button:text-is('go')")
    page.wait_for_function("() => document.querySelector('.enb-viewer').dataset.shown === 'xy:3'", timeout=10_000)
    assert wait_py(nb, "v.slice_index == 3")
    # centred: label 9's centre (101.5, 101.5) lies at the middle of the canvas
    x, y = page.evaluate("() => window.__enbHelpers.toClient(102, 102)")
    box = page.locator(".enb-overlay").bounding_box()
    assert abs(x - (box["x"] + box["width"] / 2)) < 2 and abs(y - (box["y"] + box["height"] / 2)) < 2
    page.fill(".enb-divisor", "1000")
    page.press(".enb-divisor", "Enter")
    wait_py(nb, "v.label_divisor == 1000")
    page.fill(".enb-class", "2")
    page.click("button:text-is('next id')")
    assert wait_py(nb, "v.current_label == 2001 and v.current_label") == 2001
    nb.py("lab[0, 50, 50] = 2004")
    page.click("button:text-is('next id')")
    assert wait_py(nb, "v.current_label == 2005 and v.current_label") == 2005
    nb.py("lab[0, 50, 50] = 0; v.label_divisor = 0")


def test_count_table_and_export(nb):
    page = nb.page
    page.click("button[data-op=count]")
    rows = wait_py(nb, "v.label_counts")
    assert [(r["class"], r["count"], r["ids"]) for r in rows] == [(1, 4, [5, 7, 9, 11])]
    page.wait_for_selector(".enb-counts td.enb-count")
    assert page.locator(".enb-counts td.enb-ids").inner_text() == "5 7 9 11"
    page.check(".enb-per-slice")
    page.click("button[data-op=count]")
    rows = wait_py(nb, "[r for r in v.label_counts if r['slice'] is not None]")
    assert [(r["slice"], r["ids"]) for r in rows] == [(0, [7]), (1, [5, 7]), (2, [5, 7, 11]), (3, [7, 9])]
    page.wait_for_function("() => document.querySelectorAll('.enb-counts tbody tr').length === 4", timeout=5_000)
    path = nb.py_json("str(tmp / 'counts.csv')")
    page.fill(".enb-export-path", path)
    page.click(".enb-label-tools button:text-is('export')")
    text = wait_py(nb, "(tmp / 'counts.csv').exists() and (tmp / 'counts.csv').read_text()")
    assert text.splitlines()[0] == "class,name,slice,count,ids"
    assert text.splitlines()[3] == "1,1,2,3,5 7 11"
    if nb.py_json("__import__('importlib').util.find_spec('openpyxl') is not None"):
        page.fill(".enb-export-path", nb.py_json("str(tmp / 'counts.xlsx')"))
        page.click(".enb-label-tools button:text-is('export')")
        assert wait_py(nb, "(tmp / 'counts.xlsx').exists()")
        cells = nb.py_json(
            "[c.value for c in __import__('openpyxl').load_workbook(tmp / 'counts.xlsx')['counts']['D'][1:]]"
        )
        assert cells == [1, 2, 3, 2]
    assert not nb.errors, nb.errors
