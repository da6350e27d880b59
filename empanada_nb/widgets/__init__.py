"""Jupyter widgets (anywidget): the ``Viewer``, the ``TrainingDashboard`` and the ``InferencePanel``."""

from ._serialization import label_color
from .dashboard import TrainingDashboard
from .editing import LabelLayer
from .inference_panel import InferencePanel
from .source import VolumeSource
from .viewer import Viewer

__all__ = ["Viewer", "TrainingDashboard", "InferencePanel", "LabelLayer", "VolumeSource", "label_color"]
