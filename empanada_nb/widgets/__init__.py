"""Jupyter widgets (anywidget): the :class:`Viewer` and, later, the training dashboard."""
from .editing import LabelLayer
from .source import VolumeSource
from .viewer import Viewer, label_color

__all__ = ["Viewer", "LabelLayer", "VolumeSource", "label_color"]
