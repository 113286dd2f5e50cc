"""ResNet-50, the paper's backbone (2048-d), from a local weights file."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kaleido import registry
from kaleido.backbones.extract import Backbone


@registry.backbones.register("resnet50")
class ResNet50Backbone(Backbone):
    """torchvision ResNet-50 up to layer4; ``weights``: a local file, "none" (random) or "" (torchvision's
    own download, only when a network is there)."""

    def __init__(self, mode: Literal["crop", "roi"] = "roi", image_size: int = 224, batch_size: int = 32,
                 weights: str = "", roi_output: int = 2, device: str = "auto",
                 roi_maps: Literal["level", "shared"] = "level",
                 roi_separate: list[int] = [2]) -> None:  # noqa: B006 - pydantic copies defaults
        from torchvision.models import ResNet50_Weights, resnet50

        from kaleido.weights import MissingWeights, local_file

        if weights == "none":
            net = resnet50(weights=None)
        elif weights:
            net = resnet50(weights=None)
            state = torch.load(local_file(weights, "resnet50"), map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        else:
            try:
                net = resnet50(weights=ResNet50_Weights.IMAGENET1K_V2)
            except Exception as exc:  # no network: say what to do instead
                raise MissingWeights(f"resnet50: torchvision could not download its weights ({exc}); "
                                     "give backbone.weights = a local .pth file, or \"none\"") from None
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                              net.layer4)
        super().__init__(trunk, 2048, mode, image_size, batch_size, device, roi_output, roi_maps,
                         roi_separate)
