"""Backbones: patch features from a CNN, per cropped patch (`crop`) or pooled from one pass (`roi`)."""

from kaleido.backbones.extract import Backbone, Views

__all__ = ["Backbone", "Views"]
