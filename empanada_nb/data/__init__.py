"""Data: reading and normalizing images, the training layout, targets, augmentation, demo data."""

from .augment import AugmentConfig, random_patch
from .dataset import Pair, PanopticDataset, find_pairs, group_weights, load_pair
from .ignore import IGNORE_LABEL, cast_labels, ignore_mask, ignore_value, training_mask
from .io import intensity_range, normalize_image, read_image, write_tiff
from .synthetic import make_synthetic_dataset, synthetic_image, synthetic_volume
from .targets import center_heatmap, instance_centers, panoptic_targets
