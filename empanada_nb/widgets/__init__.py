"""Jupyter widgets (anywidget): the ``Viewer`` and the ``TrainingDashboard``."""

from ._serialization import label_color
from .dashboard import TrainingDashboard
from .editing import LabelLayer
from .source import VolumeSource
from .viewer import Viewer

__all__ = ["Viewer", "TrainingDashboard", "LabelLayer", "VolumeSource", "label_color"]
