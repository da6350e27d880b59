"""Jupyter widgets (anywidget): the :class:`Viewer` and the :class:`TrainingDashboard`."""

from .dashboard import TrainingDashboard
from .editing import LabelLayer
from .source import VolumeSource
from .viewer import Viewer, label_color

__all__ = ["Viewer", "TrainingDashboard", "LabelLayer", "VolumeSource", "label_color"]
