"""Training: the config, the one loop behind train() and finetune(), checkpoints, the handle."""

from .checkpoint import checkpoint_path, load_checkpoint
from .config import TrainConfig
from .handle import TrainingHandle
from .loop import finetune, make_optimizer, train
from .plot import plot_history
