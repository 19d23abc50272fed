"""Renderers: build a view-model (a View) from model/analysis values, then `write(view, out, fmt,
unit)`: one dispatch for text, json, ndjson and csv. Pictures (charts, heatmaps) render to bytes."""
from .output import FORMATS, View, write

__all__ = ["FORMATS", "View", "write"]
