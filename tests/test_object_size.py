"""The 2D minimum object area learned from the training objects (training/object_size.py)."""

import warnings

import numpy as np
import tifffile

import empanada_nb as enb
from empanada_nb.training.object_size import MIN_OBJECTS, instance_areas, min_area_from_objects

TINY = dict(architecture="PanopticDeepLab", encoder="resnet18", patch_size=64, batch_size=4, iterations=1)


def test_areas_are_connected_pieces_of_thing_instances():
    binary = np.zeros((20, 20), np.uint8)
    binary[1:4, 1:4] = 1  # 9 px
    binary[10:15, 10:15] = 1  # 25 px, the same id: a binary mask trained without connected components
    assert sorted(instance_areas([binary], None, [1]).tolist()) == [9, 25]
    touching = np.zeros((4, 6), np.int64)
    touching[:, :3], touching[:, 3:5] = 1, 2  # two instances side by side stay two
    touching[0, 5] = -1  # unlabelled pixels are no object
    assert sorted(instance_areas([touching], None, [1]).tolist()) == [8, 12]
    panoptic = np.array([[1001, 1001, 2000, 2000], [0, 0, 2000, 1002]])
    assert sorted(instance_areas([panoptic], 1000, [1]).tolist()) == [1, 2]  # stuff (2000) is no object
    assert instance_areas([np.zeros((5, 5), np.uint8)], None, [1]).size == 0


def test_the_minimum_is_the_5th_percentile_of_enough_objects():
    areas = np.arange(1, MIN_OBJECTS + 1) * 100
    assert min_area_from_objects(areas) == int(np.percentile(areas, 5)) == 195
    assert min_area_from_objects(areas[:-1]) is None  # too few objects to say


def _masks(root):
    return [tifffile.imread(p) for p in sorted(root.glob("*/masks/*.tif"))]


def test_training_records_it_and_a_finetune_on_few_objects_keeps_it(tmp_path):
    many, few = tmp_path / "many", tmp_path / "few"
    enb.make_synthetic_dataset(many, n_images=10, size=96, seed=3)
    enb.make_synthetic_dataset(few, n_images=2, size=96, seed=4)
    expected = min_area_from_objects(instance_areas(_masks(many), None, [1]))
    assert expected is not None and len(instance_areas(_masks(few), None, [1])) < MIN_OBJECTS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = enb.train(many, out=tmp_path / "a.pth", **TINY)
        assert h.model.card.min_area == expected
        assert enb.load_model(tmp_path / "a.pth").card.min_area == expected  # saved on the card
        tuned = enb.finetune(tmp_path / "a.pth", few, out=tmp_path / "b.pth", **TINY)
    assert tuned.model.card.min_area == expected  # 6 objects say nothing: the parent's minimum stays
