"""Active patch suggestion (``empanada_nb.suggest``) and the Viewer's suggest / accept / reject.

Stub models whose uncertainty is known by construction: the semantic logit is a steep function of
the normalized pixel value, so a region of mid-grey (128) is p ~ 0.5 and black / white is p ~ 0 / 1.
"""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import empanada_nb as enb
from empanada_nb import patches as P
from empanada_nb.suggest import rank_windows, suggest_patches, uncertainty_map


class GreyModel(nn.Module):
    """p = sigmoid(40 (x - 0.5)) of the [0, 1]-normalized image, read ``shift`` pixels to the left; heatmap = x."""

    architecture = "PanopticDeepLab"
    padding_factor = 16
    num_classes = 1
    norms = {"mean": 0.0, "std": 1.0}

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        x = torch.roll(x, self.shift, dims=-1) if self.shift else x
        zeros = torch.zeros_like(x)
        return {"sem_logits": 40 * (x - 0.5), "ctr_hmp": x, "offsets": torch.cat([zeros, zeros], 1)}


def grey_volume(z=3, n=96, grey=(slice(56, 80), slice(8, 32))):
    """White objects on black, and one mid-grey (50/50) square on slice 1."""
    vol = np.zeros((z, n, n), np.uint8)
    vol[:, 10:30, 50:70] = 255
    vol[1][grey] = 128
    return vol


def test_uncertainty_is_high_where_the_model_is_unsure():
    vol = grey_volume()
    parts = uncertainty_map(GreyModel(), vol[1], parts=True, irange=(0, 255))
    sem = parts["semantic"]
    assert sem[60:76, 12:28].min() > 0.9  # p ~ 0.5
    assert sem[15:25, 55:65].max() < 0.01 and sem[85:, 85:].max() < 0.01  # p ~ 1 and p ~ 0
    assert parts["flips"].max() < 1e-4  # a model that treats flips alike does not disagree with itself
    # the heatmap is x: the grey square's plateau (0.5) is nearer the threshold than the white one's (1.0)
    assert parts["center"][68, 20] > 5 * parts["center"][20, 60]
    assert parts["uncertainty"].shape == (96, 96) and parts["uncertainty"].dtype == np.float32


def test_flips_disagree_where_the_model_is_not_flip_invariant():
    img = np.zeros((64, 64), np.uint8)
    img[16:48, 16:48] = 255
    flips = uncertainty_map(GreyModel(shift=6), img, parts=True, irange=(0, 255))["flips"]
    assert flips[32, 18] > 0.9 and flips[32, 46] > 0.9  # the left and right edges move with the flip
    assert flips[32, 32] < 0.01 and flips[4, 4] < 0.01


def test_the_unsure_region_ranks_first_and_suggestions_never_overlap():
    vol = grey_volume()
    ranked = suggest_patches(GreyModel(), vol, n=6, patch_size=32, slice_gap=1, return_scores=True)
    first, score = ranked[0]
    assert first["axis"] == "xy" and first["z"] == 1
    _, _, r0, r1, c0, c1 = P.pick_box(first, vol.shape)
    assert r0 <= 56 and r1 >= 80 - 8 and c0 <= 8 + 8 and c1 >= 32  # covers most of the grey square
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert all(set(p) == {"axis", "z", "y", "x", "size"} for p, _ in ranked)
    assert_disjoint([p for p, _ in ranked], vol.shape)


def assert_disjoint(picks, shape, gap=1):
    for a, b in itertools.combinations(picks, 2):
        if a["axis"] == b["axis"] and abs(P.pick_plane(a)[1] - P.pick_plane(b)[1]) < gap:
            assert P._box_iou(P.pick_box(a, shape)[2:], P.pick_box(b, shape)[2:]) == 0, (a, b)


def test_rank_windows_skips_picks_and_neighbouring_slices(rng):
    shape = (20, 80, 80)
    maps = {i: rng.random((80, 80)).astype(np.float32) for i in range(0, 20, 2)}
    maps[10][20:40, 20:40] += 5  # the best place, already picked on slice 9
    existing = [P.make_pick("xy", 9, 30, 30, 24, shape)]
    # a pick on another axis crossing slice 4: its row band y 60, x 0..24 is taken there
    existing.append(P.make_pick("xz", 60, 4, 12, 24, shape))
    maps[4][50:70, 0:24] += 5
    got = rank_windows(maps, shape, 12, 24, exclude=existing, slice_gap=3)
    assert len(got) == 12
    picks = [p for p, _ in got]
    assert_disjoint(picks + existing[:1], shape, gap=3)
    for p in picks:
        _, index, r0, r1, c0, c1 = P.pick_box(p, shape)
        near = abs(index - 9) < 3 and r0 < 42 and r1 > 18 and c0 < 42 and c1 > 18
        assert not near, p
        crosses = abs(index - 4) < 3 and r0 <= 60 < r1 and c0 < 24
        assert not crosses, p


def test_ortho_disagreement_finds_where_the_views_differ():
    vol = np.zeros((16, 32, 32), np.uint8)
    vol[4:12, 8:24, 8:24] = 255
    # the model reads 3 px to the left: along x in xy and xz slices, along y in yz slices
    d = enb.ortho_disagreement(GreyModel(shift=3), vol, min_size=0, min_extent=1, progress=False)
    assert d.shape == vol.shape and d.dtype == np.float32
    assert d.max() == pytest.approx(1.0)  # a 2-to-1 split of background and mito
    assert d[8, 16, 16] == 0 and d[0, 0, 0] == 0  # inside and far outside, the views agree
    assert d[8, 9, 16] == pytest.approx(1.0)  # the top edge: only the yz view moved it


def test_viewer_rejected_are_not_suggested_again_and_accepted_are_picks(tmp_path):
    vol = grey_volume()
    v = enb.Viewer(vol, labels=(vol > 0).astype(np.uint32), patch_size=32)
    v.goto("xy", 1)
    with pytest.raises(ValueError, match="needs a model"):
        v.suggest(n=2)
    v.model = GreyModel()
    first = v.suggest(n=2, slice_gap=1)
    assert len(v.suggestions) == 2 and first[0]["z"] == 1 and first[0]["score"] >= first[1]["score"]
    rejected = v.reject_suggestion(0)
    assert v.rejected_suggestions == [rejected] and len(v.suggestions) == 1
    again = v.suggest(n=4, slice_gap=1)
    assert all(
        P._box_iou(P.pick_box(s, vol.shape)[2:], P.pick_box(rejected, vol.shape)[2:]) == 0
        for s in again
        if s["z"] == rejected["z"]
    )
    # accept = the same pick as a click of the pick tool at its centre, through the browser's message
    s = dict(v.suggestions[1])
    pick = v.accept_suggestion(1)
    manual = enb.Viewer(vol, patch_size=32)
    _, index, row, col = P.pick_plane(s)
    manual._on_custom_msg(manual, {"type": "pick", "axis": "xy", "index": index, "row": row, "col": col}, [])
    assert v.picks == manual.picks == [pick]
    assert len(v.suggestions) == 3 and s not in v.suggestions
    # the accepted pick is saved like any pick, and later suggestions keep off it
    written = v.save_patches(tmp_path, name="s")["written"]
    assert written == [P.patch_filename("s", pick)]
    assert (tmp_path / "s" / "masks" / written[0]).exists()
    for s2 in v.suggest(n=4, slice_gap=1):
        assert s2["z"] != pick["z"] or P._box_iou(P.pick_box(s2, vol.shape)[2:], P.pick_box(pick, vol.shape)[2:]) == 0
    with pytest.raises(IndexError, match="no suggestion 9"):
        v.accept_suggestion(9)


def test_browser_messages_drive_suggestions():
    vol = grey_volume()
    v = enb.Viewer(vol, patch_size=32)
    v.model = GreyModel()
    v._on_custom_msg(v, {"type": "suggest", "n": 3}, [])
    assert len(v.suggestions) == 3
    v._on_custom_msg(v, {"type": "reject_suggestion", "i": 2}, [])
    v._on_custom_msg(v, {"type": "accept_suggestion", "i": 0}, [])
    assert len(v.picks) == 1 and len(v.rejected_suggestions) == 1 and len(v.suggestions) == 1


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="2D image"):
        uncertainty_map(GreyModel(), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="unknown uncertainty parts"):
        uncertainty_map(GreyModel(), np.zeros((16, 16)), weights={"entropy": 1})
    with pytest.raises(IndexError, match="out of range"):
        suggest_patches(GreyModel(), np.zeros((2, 16, 16), np.uint8), n=1, patch_size=8, slices=[5])
