"""Saliency (SOD): a foreground mask per image, whose box (with a margin) the patcher splits."""

from kaleido.sod.box import Saliency, box_iou, foreground_box

__all__ = ["Saliency", "box_iou", "foreground_box"]
