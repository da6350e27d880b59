"""Model architectures: builders are plain functions, one architecture a file."""

from .blocks import semantic_channels
from .builder import ARCHITECTURES, FINETUNABLE_LAYERS, build_model, check_patch_size, count_parameters, set_finetunable
from .cem import CEM_DEFAULT, CEM_URLS, load_encoder_weights, resolve_pretrained
from .encoders import ENCODERS, Encoder
from .fuse import fold_batchnorm, fuse_for_inference
from .panoptic_bifpn import PanopticBiFPN
from .panoptic_deeplab import PanopticDeepLab
