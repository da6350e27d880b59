"""Training: the config, the one loop behind train() and finetune(), checkpoints, the handle, empanada's rules."""

from .calibrate import calibrate_threshold
from .checkpoint import checkpoint_path, load_checkpoint
from .config import TrainConfig, classes_from_text, classes_to_text
from .distributed import events_path, follow_events
from .empanada_yaml import config_from_empanada_yaml, read_train_config
from .handle import TrainingHandle
from .loop import finetune, make_optimizer, train, train_dirs
from .plot import plot_history
from .resume import find_checkpoints, resume_training
from .rules import (
    ARCHITECTURE_HINTS,
    BN_SAFE_BATCH,
    LAYER_HINTS,
    batch_size_warning,
    check_finetune_classes,
    patch_size_warning,
)
