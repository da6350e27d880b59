import numpy as np
import pytest
import tifffile

from empanada_nb.labels import (
    count_labels,
    delete_labels,
    export_tiff,
    filter_labels,
    first_slice,
    label_boxes,
    merge_labels,
    morph_label,
    next_label,
    relabel_sequential,
    split_label,
)


@pytest.fixture
def lab():
    a = np.zeros((20, 30), np.uint16)
    a[2:6, 2:6] = 1001
    a[2:6, 10:14] = 1002
    a[10:18, 20:28] = 2001
    a[12:14, 2:4] = 3000  # stuff
    return a


def test_label_boxes(lab):
    boxes = label_boxes(lab, [1002, 2001, 77])
    assert set(boxes) == {1002, 2001}
    assert boxes[1002] == (slice(2, 6), slice(10, 14))
    assert label_boxes(lab, 0) == {}


def test_merge_labels(lab):
    out = merge_labels(lab, [1002, 1001])
    assert out.dtype == lab.dtype
    assert (out[2:6, 10:14] == 1001).all() and (out[2:6, 2:6] == 1001).all()
    assert (lab[2:6, 10:14] == 1002).all()  # input untouched
    out = merge_labels(lab, [1001, 1002], into=1005)
    assert not np.isin([1001, 1002], out).any() and (out == 1005).sum() == 32
    with pytest.raises(ValueError, match="does not fit"):
        merge_labels(lab, [1001], into=70000)
    same = merge_labels(lab, [2001], into=5, inplace=True)
    assert same is lab and (lab == 5).sum() == 64


def test_delete_labels(lab):
    out = delete_labels(lab, [1001, 2001])
    assert set(np.unique(out)) == {0, 1002, 3000}
    assert (delete_labels(lab, 4242) == lab).all()


def test_split_label_distance_watershed():
    a = np.zeros((30, 50), np.int32)
    yy, xx = np.mgrid[:30, :50]
    a[(yy - 15) ** 2 + (xx - 14) ** 2 <= 100] = 7  # two overlapping disks = dumbbell
    a[(yy - 15) ** 2 + (xx - 32) ** 2 <= 100] = 7
    a[0:3, 45:50] = 9
    out = split_label(a, 7, min_distance=8)
    assert out.dtype == a.dtype
    assert set(np.unique(out)) == {0, 7, 9, 10}
    assert out[15, 14] != out[15, 32] and {out[15, 14], out[15, 32]} == {7, 10}
    assert ((out > 0) == (a > 0)).all() and (out[0:3, 45:50] == 9).all()
    # large min_distance: one marker, nothing to split
    assert (split_label(a, 7, min_distance=40) == a).all()


def test_split_label_points_and_class():
    a = np.zeros((10, 40), np.uint32)
    a[2:8, 2:38] = 1003
    a[0, 0] = 1010
    out = split_label(a, 1003, points=[(5, 4), (5, 35)], label_divisor=1000)
    left, right = out[5, 3], out[5, 36]
    assert {left, right} == {1003, 1011}
    # flat flooding from the seeds cuts near the middle
    assert abs(int((out[2:8, 2:38] == left).sum()) - int((out[2:8, 2:38] == right).sum())) <= 6 * 3
    out = split_label(a, 1003, points=[(5, 4), (5, 35)], new_label=1500)
    assert 1500 in out
    with pytest.raises(ValueError, match="not in labels"):
        split_label(a, 5)


def test_split_label_3d():
    a = np.zeros((12, 12, 30), np.int64)
    zz, yy, xx = np.mgrid[:12, :12, :30]
    a[(zz - 6) ** 2 + (yy - 6) ** 2 + (xx - 8) ** 2 <= 25] = 1
    a[(zz - 6) ** 2 + (yy - 6) ** 2 + (xx - 19) ** 2 <= 25] = 1
    out = split_label(a, 1, min_distance=5)
    assert out[6, 6, 8] != out[6, 6, 19] and ((out > 0) == (a > 0)).all()


def test_morph_label_ops():
    a = np.zeros((20, 20), np.int16)
    a[5:10, 5:10] = 1
    a[5:10, 10:12] = 2  # neighbour on the right
    d = morph_label(a, 1, "dilate", 1)
    assert d.dtype == a.dtype
    assert (d[5:10, 10:12] == 2).all()  # other label not overwritten
    assert d[4, 7] == 1 and d[7, 4] == 1 and d[4, 4] == 0  # disk, not square
    e = morph_label(a, 1, "erode", 1)
    assert (e == 1).sum() == 9 and (e == 2).sum() == 10
    h = a.copy()
    h[7, 7] = 0
    assert morph_label(h, 1, "fill_holes")[7, 7] == 1
    assert morph_label(h, 1, "close", 1)[7, 7] == 1
    o = a.copy()
    o[7, 10:14] = 1  # thin spur removed by opening
    o[5:10, 10:12] = 0
    assert (morph_label(o, 1, "open", 1)[7, 11:14] == 0).all()
    # label at the array border is not eroded from outside
    b = np.zeros((10, 10), np.uint8)
    b[0:4, 0:10] = 3
    assert (morph_label(b, 3, "erode", 1)[0] == 3).all()
    with pytest.raises(ValueError, match="op must be"):
        morph_label(a, 1, "grow")
    v = np.zeros((7, 7, 7), np.uint8)
    v[3, 3, 3] = 4
    assert (morph_label(v, 4, "dilate", 1) == 4).sum() == 7


def test_filter_labels():
    a = np.zeros((10, 10), np.int32)
    a[0:3, 0:3] = 1  # 9 px, touches border
    a[4:6, 4:6] = 2  # 4 px
    a[5:9, 6:9] = 3  # 12 px, interior
    assert set(np.unique(filter_labels(a, min_size=5))) == {0, 1, 3}
    assert set(np.unique(filter_labels(a, remove_border=True))) == {0, 2, 3}
    big = a.astype(np.int64) * 10**12
    assert set(np.unique(filter_labels(big, min_size=10))) == {0, 3 * 10**12}


def test_count_next_first(lab):
    assert count_labels(lab, label_divisor=1000) == {1: 2, 2: 1}
    assert count_labels(lab) == {1: 4}
    assert count_labels(np.zeros((3, 3), np.uint8)) == {}
    assert next_label(lab) == 3001
    assert next_label(lab, 1, 1000) == 1003 and next_label(lab, 4, 1000) == 4001
    with pytest.raises(ValueError, match="together"):
        next_label(lab, class_id=1)
    vol = np.zeros((6, 4, 4), np.uint8)
    vol[3:5, 1, 1] = 9
    assert first_slice(vol, 9) == 3 and first_slice(vol, 9, axis=1) == 1
    with pytest.raises(ValueError, match="not in labels"):
        first_slice(vol, 8)


def test_relabel_sequential(lab):
    a = lab.copy()
    a[a == 1002] = 1050
    a[a == 2001] = 2007
    out = relabel_sequential(a, label_divisor=1000)
    assert set(np.unique(out)) == {0, 1001, 1002, 2001, 3000}
    assert (out[2:6, 10:14] == 1002).all() and out.dtype == a.dtype
    plain = relabel_sequential(np.array([[0, 5, 9], [9, 40, 0]], np.uint8))
    assert plain.tolist() == [[0, 1, 2], [2, 3, 0]]


def test_export_tiff_3d_and_2d(tmp_path, lab):
    vol = np.stack([lab, lab])
    p = export_tiff(vol, tmp_path / "seg.tif")
    back = tifffile.imread(p)
    assert back.shape == vol.shape and back.dtype == np.int32 and (back == vol).all()
    one = export_tiff(vol[:1], tmp_path / "one.tif")
    assert tifffile.imread(one).shape == (1, 20, 30)
    assert tifffile.imread(export_tiff(lab, tmp_path / "2d.tif")).shape == (20, 30)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_tiff(vol, tmp_path / "seg.tif")
    export_tiff(vol * 0, tmp_path / "seg.tif", overwrite=True)
    assert not tifffile.imread(tmp_path / "seg.tif").any()
    big = np.array([[0, 2**31 + 5]], np.uint64)
    assert tifffile.imread(export_tiff(big, tmp_path / "big.tif")).dtype == np.uint32
    with pytest.raises(ValueError, match="32 bits"):
        export_tiff(np.array([[2**33]], np.uint64), tmp_path / "huge.tif")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["2d.tif", "big.tif", "one.tif", "seg.tif"]


def test_export_tiff_series(tmp_path, lab):
    vol = np.stack([lab] * 11)
    vol[3] = 0
    d = export_tiff(vol, tmp_path / "stack", series=True)
    names = sorted(x.name for x in d.iterdir())
    assert names[0] == "stack_0000.tif" and names[-1] == "stack_0010.tif" and len(names) == 11
    assert tifffile.imread(d / "stack_0003.tif").shape == (20, 30)
    assert not tifffile.imread(d / "stack_0003.tif").any()
    assert (tifffile.imread(d / "stack_0004.tif") == lab).all()
    with pytest.raises(FileExistsError):
        export_tiff(vol, d, series=True)
    export_tiff(vol[:2], d, series=True, overwrite=True)
    assert len(list(d.iterdir())) == 2
    with pytest.raises(ValueError, match="3D"):
        export_tiff(lab, tmp_path / "s2", series=True)
    assert not any(x.name.startswith(".") for x in tmp_path.iterdir())  # no temporaries left


def test_bad_labels():
    with pytest.raises(TypeError, match="integer"):
        delete_labels(np.zeros((3, 3), float), 1)
    with pytest.raises(ValueError, match="2D or 3D"):
        filter_labels(np.zeros(5, np.int32))


def test_label_boxes_across_slabs(monkeypatch):
    import empanada_nb.labels as L

    monkeypatch.setattr(L, "SLAB_ELEMENTS", 16)  # 4x4 slices: one slice per slab
    vol = np.zeros((6, 4, 4), np.uint32)
    vol[1, 0, 1] = 5
    vol[4, 3, 2] = 5
    vol[2:4, 1:3, 1:3] = 6
    assert L.label_boxes(vol, 5) == {5: (slice(1, 5), slice(0, 4), slice(1, 3))}
    boxes = L.label_boxes(vol, [5, 6])
    assert boxes[6] == (slice(2, 4), slice(1, 3), slice(1, 3)) and boxes[5][0] == slice(1, 5)
    assert (L.delete_labels(vol, [5]) == np.where(vol == 5, 0, vol)).all()


def test_label_table_per_class_and_slice(tmp_path):
    from empanada_nb.labels import export_label_table, label_table

    vol = np.zeros((3, 6, 6), np.uint32)
    vol[0, 0, 0], vol[0, 1, 1], vol[1, 2, 2], vol[2, 3, 3] = 1001, 2001, 1001, 1000  # 1000 is stuff
    rows = label_table(vol, 1000, {1: "mito", 2: "er"})
    got = [(r["class"], r["name"], r["count"], r["ids"]) for r in rows]
    assert got == [(1, "mito", 1, [1001]), (2, "er", 1, [2001])]
    per = label_table(vol, 1000, per_slice=True)
    assert [(r["slice"], r["class"], r["ids"]) for r in per] == [(0, 1, [1001]), (0, 2, [2001]), (1, 1, [1001])]
    per_yz = label_table(vol, None, per_slice=True, axis="yz")  # slices along x
    assert [(r["slice"], r["ids"]) for r in per_yz] == [(0, [1001]), (1, [2001]), (2, [1001]), (3, [1000])]
    assert label_table(vol)[0]["count"] == count_labels(vol)[1] == 3  # without a divisor: all ids, class 1
    out = export_label_table(per, tmp_path / "c.csv")
    lines = ["class,name,slice,count,ids", "1,1,0,1,1001", "2,2,0,1,2001", "1,1,1,1,1001"]
    assert out.read_text().splitlines() == lines
    with pytest.raises(FileExistsError, match="overwrite"):
        export_label_table(per, out)
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx"):
        export_label_table(per, tmp_path / "c.txt")
    openpyxl = pytest.importorskip("openpyxl")
    export_label_table(rows, tmp_path / "c.xlsx")
    wb = openpyxl.load_workbook(tmp_path / "c.xlsx")
    assert wb.sheetnames == ["counts", "mito", "er"] and wb["mito"]["A2"].value == 1001


def test_fill_holes_max_size():
    a = np.zeros((12, 12), np.int32)
    a[1:11, 1:11] = 3
    a[2:4, 2:4] = 0  # 4 px hole
    a[5:9, 5:9] = 0  # 16 px hole
    out = morph_label(a, 3, "fill_holes", max_hole_size=5)
    assert out[2, 2] == 3 and (out[5:9, 5:9] == 0).all()
    assert (morph_label(a, 3, "fill_holes")[1:11, 1:11] == 3).all()
