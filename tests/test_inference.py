"""2D inference: tiling geometry, exact seam-free stitching, downsampling, ROI, batches, errors."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from empanada_nb.inference import Predictor, segment_batch, segment_image, tile_spans
from empanada_nb.model_io import ModelCard


def cone_volume(shape, centers, radius):
    """Balls (or disks for a 2D shape) whose intensity falls linearly from 1 at the center to 0.5 at the rim."""
    grids = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    img = np.zeros(shape, np.float32)
    for c in centers:
        d = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grids, c)))
        img = np.maximum(img, np.where(d < radius, 1 - d / (2 * radius), 0))
    return img


class ConeModel(nn.Module):
    """A fake network with exact, local outputs for :func:`cone_volume` images.

    Every output at a pixel depends only on its 3x3 neighbourhood (like a CNN with a tiny receptive
    field), so stitched tiles must reproduce the whole-image outputs exactly. The distance to the
    center is read from the intensity, the direction from the intensity gradient.
    """

    architecture = "PanopticDeepLab"
    padding_factor = 16
    num_classes = 1

    def __init__(self, radius: float, sigma: float = 2.0):
        super().__init__()
        self.radius, self.sigma = radius, sigma
        self.dummy = nn.Parameter(torch.zeros(1))
        self.norms = {"mean": 0.5, "std": 0.5}
        self.card = ModelCard(
            architecture="PanopticDeepLab",
            encoder="resnet18",
            num_classes=1,
            thing_list=[1],
            label_divisor=1000,
            padding_factor=16,
        )
        self.images_seen = 0
        self.modes = []

    def forward(self, x):
        self.images_seen += x.shape[0]
        self.modes.append(self.training)
        i = x * 0.5 + 0.5
        fg = (i > 0.25).float()
        p = torch.nn.functional.pad(i, (1, 1, 1, 1), mode="replicate")
        gy = (p[..., 2:, 1:-1] - p[..., :-2, 1:-1]) / 2
        gx = (p[..., 1:-1, 2:] - p[..., 1:-1, :-2]) / 2
        norm = torch.sqrt(gy**2 + gx**2)
        r = (2 * self.radius * (1 - i)).clamp(min=0) * fg
        unit = torch.where(norm > 0, 1 / norm.clamp(min=1e-12), torch.zeros_like(norm))
        ctr = (
            torch.maximum(torch.exp(-(r**2) / (2 * self.sigma**2)), torch.exp(-((norm * 2 * self.radius) ** 2) / 0.05))
            * fg
        )
        return {
            "sem_logits": 10 * (2 * fg - 1),
            "ctr_hmp": ctr,
            "offsets": torch.cat([gy * unit * r, gx * unit * r], dim=1),
        }


CENTERS = [(100, 72), (40, 150), (160, 160)]


@pytest.fixture
def cone():
    return ConeModel(radius=20)


@pytest.fixture
def cone_image():
    return cone_volume((200, 200), CENTERS, 20)


def _disk(shape, c, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - c[0]) ** 2 + (xx - c[1]) ** 2 < r**2


@pytest.mark.parametrize(
    "length,tile,overlap", [(200, 64, 16), (64, 64, 16), (65, 64, 0), (1000, 256, 100), (17, 32, 8)]
)
def test_tile_spans_partition_and_context(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    cover = np.zeros(length, int)
    for s in spans:
        assert 0 <= s.start <= s.core_start < s.core_stop <= s.stop <= length
        assert s.stop - s.start == min(tile, length)
        cover[s.core_start : s.core_stop] += 1
        # every core pixel has overlap // 2 px of context unless it is at the image border
        assert s.core_start - s.start >= overlap // 2 or s.start == 0
        assert s.stop - s.core_stop >= overlap // 2 or s.stop == length
    assert (cover == 1).all()  # cores partition the axis: every pixel comes from exactly one tile


def test_tile_spans_rejects_overlap_as_large_as_tile():
    with pytest.raises(ValueError, match="tile_overlap"):
        tile_spans(300, 64, 64)


def test_stitched_maps_equal_whole_image_maps(cone, cone_image):
    x = (cone_image - 0.5) / 0.5
    whole = Predictor(cone).maps([x])[0]
    tiled_pred = Predictor(cone, tile_size=64, tile_overlap=16, batch_size=3)
    tiled = tiled_pred.maps([x])[0]
    assert tiled.shape == whole.shape == (4, 200, 200)
    assert torch.equal(tiled, whole)
    # the check has teeth: without overlap the tile borders leak into the stitched maps
    seams = Predictor(cone, tile_size=64, tile_overlap=0).maps([x])[0]
    assert not torch.equal(seams, whole)


def test_object_across_seams_is_one_instance(cone, cone_image):
    whole = segment_image(cone, cone_image, irange=(0, 1))
    tiled = segment_image(cone, cone_image, irange=(0, 1), tile_size=64, tile_overlap=16)
    assert whole.shape == (200, 200) and np.issubdtype(whole.dtype, np.integer)
    np.testing.assert_array_equal(tiled, whole)
    ids = np.unique(tiled[tiled > 0])
    assert len(ids) == len(CENTERS)
    assert all(i // 1000 == 1 for i in ids)
    # the disk at (100, 72) crosses the cuts at x = 56 and y = 104 of 64-px tiles: one id inside it
    inner = _disk(tiled.shape, CENTERS[0], 17)
    assert len(np.unique(tiled[inner])) == 1 and tiled[inner][0] > 0


def test_downsample_outputs_full_resolution(cone):
    img = cone_volume((192, 256), [(64, 64), (120, 180)], 24)
    labels = segment_image(ConeModel(radius=12), img, irange=(0, 1), downsample=2)
    assert labels.shape == img.shape
    assert len(np.unique(labels[labels > 0])) == 2
    for c in [(64, 64), (120, 180)]:
        truth = _disk(img.shape, c, 24)
        lab = np.bincount(labels[truth]).argmax()
        pred = labels == lab
        assert (pred & truth).sum() / (pred | truth).sum() > 0.85


def test_bad_downsample_is_refused(cone, cone_image):
    with pytest.raises(ValueError, match="downsample must be one of"):
        segment_image(cone, cone_image, downsample=3)


def test_roi_zeroes_outside_and_skips_tiles(cone, cone_image):
    roi = np.zeros(cone_image.shape, bool)
    roi[:, :110] = True  # holds the disks at x = 72 and x = 150? only the first
    cone.images_seen = 0
    labels, probs = segment_image(
        cone, cone_image, irange=(0, 1), roi=roi, tile_size=64, tile_overlap=16, return_probs=True
    )
    assert not labels[~roi].any() and not probs[~roi].any()
    assert labels[_disk(labels.shape, CENTERS[0], 15)].all()
    # 4 x 4 tiles on the whole image; the ROI box (plus context) needs fewer
    assert 0 < cone.images_seen < 16
    assert probs.shape == cone_image.shape and probs.max() <= 1


def test_empty_roi_gives_zeros_without_running_the_model(cone, cone_image):
    cone.images_seen = 0
    labels = segment_image(cone, cone_image, roi=np.zeros(cone_image.shape, bool))
    assert not labels.any() and cone.images_seen == 0


def test_segment_batch_matches_segment_image_and_restores_train_mode(cone, cone_image):
    stack = np.stack([cone_image, cone_image[::-1], cone_image[:, ::-1]])
    cone.train()
    out = segment_batch(cone, stack, irange=(0, 1), batch_size=2)
    assert cone.training and not any(cone.modes)  # ran in eval mode, then restored
    assert out.shape == stack.shape
    for img, lab in zip(stack, out):
        np.testing.assert_array_equal(lab, segment_image(cone, img, irange=(0, 1)))
    listed = segment_batch(cone, iter([cone_image, cone_image[:100]]), irange=(0, 1))
    assert isinstance(listed, list) and listed[1].shape == (100, 200)


def test_real_model_odd_size_uint8():
    from empanada_nb.models import build_model

    torch.manual_seed(0)
    model = build_model("PanopticDeepLab", "resnet18", num_classes=1)
    img = np.random.default_rng(0).integers(0, 255, (70, 90), dtype=np.uint8)
    labels, probs = segment_image(model, img, return_probs=True)
    assert labels.shape == (70, 90) and labels.dtype == np.int32
    assert probs.shape == (70, 90) and 0 <= probs.min() and probs.max() <= 1
    assert model.training  # build_model returns a training-mode model; its mode is restored


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((32, 32, 3)), "colour channel"),
        (np.zeros((4, 32, 32)), "must be 2D"),
        (np.array(["a", "b"]).reshape(1, 2), "dtype"),
    ],
)
def test_bad_images_are_refused(cone, bad, match):
    with pytest.raises(ValueError, match=match):
        segment_image(cone, bad)


def test_roi_shape_mismatch(cone, cone_image):
    with pytest.raises(ValueError, match="roi shape"):
        segment_image(cone, cone_image, roi=np.ones((10, 10), bool))


def test_min_area_drops_small_instances_in_2d_only():
    small = ConeModel(radius=6)  # sections of ~110 px, under the 2D default MIN_AREA (128)
    img = cone_volume((200, 200), CENTERS, 6)
    kept = segment_image(small, img, irange=(0, 1), min_area=0)
    assert len(np.unique(kept[kept > 0])) == 3
    assert not segment_image(small, img, irange=(0, 1)).any()  # the default drops them
    assert not segment_batch(small, img[None], irange=(0, 1))[0].any()  # segment_batch has the same default
    ids = np.unique(kept[kept > 0])
    areas = np.bincount(kept.ravel())[ids]
    cut = segment_image(small, img, irange=(0, 1), min_area=int(areas.max()))
    assert set(np.unique(cut[cut > 0])) == set(ids[areas >= areas.max()])  # the largest stay, ids and pixels kept
    np.testing.assert_array_equal(cut[cut > 0], kept[cut > 0])


def test_the_default_min_area_is_the_one_the_model_learned():
    from empanada_nb.model_io import card_for

    small = ConeModel(radius=6)  # sections of ~110 px: dropped by MIN_AREA (128), kept by a learned 50
    img = cone_volume((200, 200), CENTERS, 6)
    card_for(small).min_area = 50
    assert len(np.unique(segment_image(small, img, irange=(0, 1)))) == 4  # 3 objects and background
    assert len(np.unique(segment_batch(small, img[None], irange=(0, 1))[0])) == 4
    assert not segment_image(small, img, irange=(0, 1), min_area=128).any()  # a given min_area wins
    card_for(small).min_area = None  # a card without one (an older model): MIN_AREA
    assert not segment_image(small, img, irange=(0, 1)).any()


def _asymmetric_model():
    """A random PanopticDeepLab whose heads give outputs large enough to tell a flip's sign apart."""
    import empanada_nb as enb
    from empanada_nb.models.blocks import PanopticHead

    torch.manual_seed(0)
    model = enb.build_model("PanopticDeepLab", "resnet18").eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, PanopticHead):
                m.head[-1].weight.mul_(300.0)  # initialised at std 0.001
    return model


def _flip_back(maps: torch.Tensor, dims: tuple) -> torch.Tensor:
    m = torch.flip(maps, dims=dims)
    for d in dims:
        m[d] *= -1  # dy is channel -2, dx channel -1
    return m


def test_test_time_flips_give_flip_equivariant_maps():
    model = _asymmetric_model()
    x = np.random.default_rng(0).random((64, 96), dtype=np.float32)  # multiples of 16: no padding
    plain, tta = Predictor(model), Predictor(model, flips=True)
    for dims in ((-1,), (-2,)):
        flipped = np.ascontiguousarray(np.flip(x, axis=dims))
        # without flips the network is not equivariant, so the check below can fail ...
        off = _flip_back(plain.maps([flipped])[0], dims) - plain.maps([x])[0]
        assert off[-2:].abs().max() > 1e-2 and off[:1].abs().max() > 1e-3
        # ... with them, a flipped image gives the flipped maps, offsets pointing the other way
        torch.testing.assert_close(_flip_back(tta.maps([flipped])[0], dims), tta.maps([x])[0], rtol=1e-4, atol=1e-4)
    # the average of the 4 views, not the first one
    assert (tta.maps([x])[0] - plain.maps([x])[0]).abs().max() > 1e-3


def test_flips_reach_every_face():
    import empanada_nb as enb

    model = _asymmetric_model()
    image, _ = enb.synthetic_image(64, n_objects=3, seed=2)
    a = segment_image(model, image, flips=True, semantic_only=True, return_probs=True)[1]
    b = segment_image(model, np.ascontiguousarray(image[:, ::-1]), flips=True, semantic_only=True, return_probs=True)[1]
    np.testing.assert_allclose(a, b[:, ::-1], atol=1e-4)
    assert segment_batch(model, np.stack([image, image]), flips=True).shape == (2, 64, 64)
    vol = np.stack([image] * 3)
    assert enb.segment_stack(model, vol, flips=True, progress=False, min_size=0).shape == vol.shape
    assert enb.SegmentOptions(mode="stack", flips=True).kwargs()["flips"] is True
