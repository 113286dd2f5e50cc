"""ResNet-50, the paper's backbone (2048-d), from a local weights file."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from kaleido import registry
from kaleido.backbones.extract import Backbone


@registry.backbones.register("resnet50")
class ResNet50Backbone(Backbone):
    """torchvision ResNet-50 up to layer4; ``weights``: a local .pth file of torchvision's ResNet-50
    ImageNet weights (a state dict, or a dict holding one under "state_dict") or "none" (random).
    Nothing is downloaded: the default "" raises ``MissingWeights`` saying what to give."""

    def __init__(self, mode: Literal["crop", "roi"] = "roi", image_size: int = 224, batch_size: int = 32,
                 weights: str = "", roi_output: int = 2, device: str = "auto",
                 roi_maps: Literal["level", "shared"] = "level",
                 roi_separate: list[int] = [2]) -> None:  # noqa: B006 - pydantic copies defaults
        from kaleido.weights import MissingWeights, local_file

        if not weights:  # before torchvision is touched: never its download of IMAGENET1K weights
            raise MissingWeights("resnet50: no weights given and nothing is downloaded: give "
                                 "backbone.weights = a local .pth file of torchvision's ResNet-50 "
                                 "ImageNet weights, or \"none\" for random weights")
        path = None if weights == "none" else local_file(weights, "resnet50")
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                              net.layer4)
        super().__init__(trunk, 2048, mode, image_size, batch_size, device, roi_output, roi_maps,
                         roi_separate)
