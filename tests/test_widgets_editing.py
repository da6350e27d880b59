"""Label layers, edits and the undo history (widgets/editing.py), without a widget."""

import numpy as np
import pytest

from empanada_nb.widgets.editing import History, LabelLayer, apply_fill, apply_stroke, diff_volume, stroke_mask


def test_stroke_mask_geometry():
    r0, c0, m = stroke_mask([[5.5, 5.5]], 1, (20, 20))
    assert m.sum() == 1 and (r0 + np.argwhere(m)[0][0], c0 + np.argwhere(m)[0][1]) == (5, 5)
    r0, c0, m = stroke_mask([[50.5, 50.5]], 10, (100, 100))
    assert 70 <= m.sum() <= 90  # a disk of radius 5
    r0, c0, m = stroke_mask([[10, 10], [10, 60]], 4, (100, 100))
    rows = np.nonzero(m.any(1))[0]
    assert 3 <= len(rows) <= 5 and m.shape[1] >= 50
    res = stroke_mask([[-1.5, 3]], 4, (10, 10))  # clipped at the border
    assert res[0] == 0 and res[2].sum() > 0
    assert stroke_mask([[-50, -50]], 4, (10, 10)) is None
    assert stroke_mask([], 4, (10, 10)) is None


def test_apply_stroke_fill_and_history():
    data = np.zeros((3, 30, 30), np.uint16)
    layer = LabelLayer(data, "l", data.shape)
    h = History(max_steps=25)
    for k in range(30):
        h.record(apply_stroke(layer, "xy", 1, [[k % 30 + 0.5, 3.5]], 1, k + 1))
    assert data[1, :, 3].max() == 30
    n = 0
    while h.undo():
        n += 1
    assert n == 25  # at least 20 undo steps
    assert data[1, 5:, 3].sum() == 0 and data[1, 4, 3] == 5  # the 5 oldest strokes were dropped
    assert h.redo() is not None and data[1, 5, 3] == 6
    h.record(apply_stroke(layer, "xy", 1, [[20.5, 20.5]], 3, 9))
    assert not h.can_redo  # a new edit clears redo
    e = apply_stroke(layer, "xy", 1, [[20.5, 20.5]], 3, 0, erase=True)
    assert data[1, 20, 20] == 0 and e.where["axis"] == "xy"
    # fill the background region of slice 2 along xz (rows z, cols x)
    e = apply_fill(layer, "xz", 2, 0, 0, 7)
    assert (data[:, 2, :] == 7).sum() == 90 - (data[:, 2, :] != 7).sum() and e is not None
    assert apply_fill(layer, "xz", 2, 0, 0, 7) is None  # same label: nothing to do
    with pytest.raises(ValueError):
        apply_stroke(layer, "xy", 1, [[1, 1]], 3, 70000)  # does not fit in uint16
    before = data.copy()
    new = data.copy()
    new[0] = 3
    e = diff_volume(layer, new)
    assert (data[0] == 3).all()
    e.undo()
    np.testing.assert_array_equal(data, before)
    assert diff_volume(layer, data.copy()) is None


def test_label_layer_inputs():
    shape = (2, 4, 5)
    with pytest.raises(ValueError, match="does not match"):
        LabelLayer(np.zeros((2, 4, 4), np.uint8), "x", shape)
    with pytest.raises(TypeError):
        LabelLayer(np.full(shape, 0.5), "x", shape)
    assert LabelLayer(np.zeros(shape, bool), "b", shape).data.dtype == np.uint32
    ro = np.zeros(shape, np.uint8)
    ro.setflags(write=False)
    assert LabelLayer(ro, "r", shape).data.flags.writeable
    l2 = LabelLayer(np.zeros((4, 5), np.uint8), "p", (1, 4, 5))
    assert l2.volume.shape == (1, 4, 5)
    pl = LabelLayer(np.zeros((4, 5), np.uint8), "s", shape, plane=("xy", 1))
    assert pl.plane_view("xy", 0) is None and pl.plane_view("xy", 1).shape == (4, 5)
