"""Jupyter widgets (anywidget): the :class:`Viewer` and the :class:`TrainingDashboard`."""

from ._serialization import label_color
from .dashboard import TrainingDashboard
from .editing import LabelLayer
from .source import VolumeSource
from .viewer import Viewer

__all__ = ["Viewer", "TrainingDashboard", "LabelLayer", "VolumeSource", "label_color"]
