"""empanada_nb: panoptic segmentation of organelles in EM, in Jupyter.

One torch core (models, data, training, inference, metrics, label tools) with thin faces over
it: anywidget widgets for notebooks and the ``empanada-nb`` CLI.
"""

__version__ = "0.1.0"

from .autosave import clear_autosave, list_autosaves
from .bioimageio import export_bioimageio, load_bioimageio
from .data import find_pairs, make_synthetic_dataset, normalize_image, read_image, synthetic_image, synthetic_volume
from .data.ignore import IGNORE_LABEL, cast_labels, ignore_mask, ignore_value
from .demo import run_demo
from .distributed import default_halo, segment_distributed
from .empanada_format import export_model, load_empanada_model, read_empanada_config
from .inference import segment_batch, segment_image
from .labels import (
    count_labels,
    delete_labels,
    export_label_table,
    export_tiff,
    filter_labels,
    first_slice,
    label_table,
    merge_labels,
    morph_label,
    next_label,
    relabel_sequential,
    split_label,
)
from .metrics import evaluate, match_instances
from .model_io import ModelCard, list_models, load_model, register_model, save_model
from .models import (
    ARCHITECTURES,
    CEM_URLS,
    ENCODERS,
    FINETUNABLE_LAYERS,
    build_model,
    check_patch_size,
    count_parameters,
    fuse_for_inference,
    set_finetunable,
)
from .omezarr import convert_to_ome_zarr, create_labels, write_label_pyramid, write_ome_zarr_labels
from .patches import (
    crop_flipbook,
    flipbook_range,
    load_points,
    pyramid_level,
    pyramid_levels,
    save_flipbooks,
    save_points,
)
from .postprocess import panoptic_postprocess, panoptic_postprocess_batch, split_fragments
from .precision import PRECISIONS, resolve_precision
from .reader import Pyramid, open_pyramid, volume_info
from .registry import export as export_registered_model
from .registry import import_archive as import_model
from .registry import info as model_info
from .registry import registry_dir
from .registry import remove as remove_model
from .segment_options import SegmentOptions
from .suggest import ortho_disagreement, rank_windows, suggest_patches, uncertainty_map
from .tiles import create_tiles, merge_tiles, read_tiles, write_tile_masks
from .training import (
    TrainConfig,
    TrainingHandle,
    calibrate_threshold,
    config_from_empanada_yaml,
    events_path,
    find_checkpoints,
    finetune,
    follow_events,
    read_train_config,
    resume_training,
    train,
)
from .volume import open_volume, segment_ortho, segment_stack
from .widgets import InferencePanel, TrainingDashboard, Viewer
