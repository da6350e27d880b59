"""Training on a real EM crop (Lucchi++ FIB-SEM, ../shared/data).

The loss falls and the model beats a trivial baseline.
"""

import warnings

import numpy as np
import pytest
import tifffile

import empanada_nb as enb
from empanada_nb.data import write_tiff

pytestmark = pytest.mark.realdata


def _crops(img, msk, slices, size, root):
    for z in slices:
        for y0, x0 in [(100, 100), (400, 500)]:
            name = f"lucchi_z{z:03d}_y{y0}_x{x0}.tif"
            write_tiff(root / "lucchi" / "images" / name, img[z, y0 : y0 + size, x0 : x0 + size])
            write_tiff(root / "lucchi" / "masks" / name, msk[z, y0 : y0 + size, x0 : x0 + size])


def test_training_on_real_crop_learns(shared_data, tmp_path):
    img_path = shared_data / "lucchipp_train_image.tif"
    if not img_path.exists():
        pytest.skip(f"{img_path} not found")
    keys = list(range(0, 160, 20)) + [150, 158]
    img = tifffile.imread(img_path, key=keys)
    msk = tifffile.imread(shared_data / "lucchipp_train_mito_semantic.tif", key=keys)
    _crops(img, msk, range(0, 8), 256, tmp_path / "train")
    _crops(img, msk, range(8, 10), 256, tmp_path / "val")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(
            tmp_path / "train",
            val_dir=tmp_path / "val",
            out=tmp_path / "m.pth",
            architecture="PanopticDeepLab",
            encoder="resnet18",
            iterations=60,
            batch_size=8,
            patch_size=128,
            connected_components=True,
            val_interval=60,
        )
    steps = [s["loss"] for s in h.events("step")]
    assert np.mean(steps[-10:]) < 0.8 * np.mean(steps[:10])
    val = h.events("validation")[-1]
    # trivial baseline: calling everything mitochondrion scores IoU = foreground fraction
    gt = np.stack([tifffile.imread(p) for p in sorted((tmp_path / "val" / "lucchi" / "masks").glob("*.tif"))]) > 0
    baseline = gt.mean()
    print(f"real-data validation after 60 iterations: {val}; all-foreground IoU baseline {baseline:.3f}")
    assert val["iou"] > 2 * baseline and val["iou"] > 0.15
