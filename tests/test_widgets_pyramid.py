"""A multiscale OME-Zarr in the Viewer: the level follows the zoom, coordinates stay level 0's, voxel sizes.

The browser side (zooming out, clicking at a coarse level, the stretched xz aspect) is tested in
tests/browser/test_browser_pyramid.py; here the Python side answers the browser's requests.
"""

import numpy as np
import pytest
import zarr

from empanada_nb.widgets import Viewer
from empanada_nb.widgets._serialization import decode_labels


def write_ome_zarr(path, base, levels=3, voxel=(40.0, 8.0, 8.0)):
    """A small OME-Zarr (NGFF 0.4) pyramid: y and x halved per level, z kept, voxel sizes in the metadata."""
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for i in range(levels):
        f = 2**i
        g.create_array(str(i), data=np.ascontiguousarray(base[:, ::f, ::f]), chunks=(1, 64, 64))
        scale = [voxel[0], voxel[1] * f, voxel[2] * f]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    g.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return path


class Recorder:
    def __init__(self, widget):
        self.msgs = []
        widget.send = lambda content, buffers=None: self.msgs.append((content, list(buffers or [])))


@pytest.fixture
def pyramid(tmp_path):
    base = (np.arange(4 * 256 * 192) % 251).astype(np.uint8).reshape(4, 256, 192)
    return write_ome_zarr(tmp_path / "img.zarr", base), base


def test_levels_voxel_size_and_level0_coordinates(pyramid):
    path, base = pyramid
    lab = np.zeros(base.shape, np.uint32)
    lab[2, 100:140, 20:60] = 7
    v = Viewer(path, labels=lab, patch_size=32)
    assert v.shape == [4, 256, 192] and v.n_levels == 3 and v.level == 0
    assert v.level_scales == [[1.0, 1.0, 1.0], [1.0, 2.0, 2.0], [1.0, 4.0, 4.0]]
    assert v.voxel_size == [40.0, 8.0, 8.0]  # from the OME-Zarr metadata
    assert v.pyramid_scale == (1.0, 1.0, 1.0)  # picks are level 0's
    assert v.add_pick("xy", 2, row=120, col=40)["y"] == 120
    rec = Recorder(v)
    uid = v.label_layers[-1].uid  # layer uids count over the whole process: never assume 1
    v._on_custom_msg(v, {"type": "get", "rid": 1, "axis": "xy", "index": 2, "level": 2, "layers": [uid]}, [])
    (content, buffers), *_ = rec.msgs
    assert content["level"] == 2 and content["index"] == 2
    image, labels = content["parts"]
    assert image["shape"] == [64, 48] and labels["shape"] == [64, 48]  # level 2's slice, labels downsampled
    got = decode_labels(labels, buffers[1]).reshape(64, 48)
    assert (got == lab[2, ::4, ::4]).all() and got[30, 10] == 7
    # an xz slice at level 1: z kept (factor 1), x halved; the y index is level 0's, halved to read level 1
    rec.msgs.clear()
    v._on_custom_msg(v, {"type": "get", "rid": 2, "axis": "xz", "index": 101, "level": 1, "layers": []}, [])
    (content, buffers), *_ = rec.msgs
    assert content["parts"][0]["shape"] == [4, 96]


def test_voxel_size_argument_and_fixed_level(pyramid):
    path, base = pyramid
    v = Viewer(path, voxel_size=(30, 5, 5))
    assert v.voxel_size == [30.0, 5.0, 5.0]
    fixed = Viewer(path, level=1)  # the older mode: one level shown as the image, its own coordinates
    assert fixed.shape == [4, 128, 96] and fixed.level_scales == [] and fixed.pyramid_scale == (1.0, 2.0, 2.0)
    assert Viewer(base).voxel_size == [1.0, 1.0, 1.0] and Viewer(base).level_scales == []
    with pytest.raises(ValueError, match="voxel_size"):
        Viewer(base, voxel_size=(1, 0, 1))
