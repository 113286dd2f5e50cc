"""A small UNet-style foreground segmentation network (the paper's SOD step, in practice).

Three encoder stages, a bottleneck and three decoder stages with skip connections; the image is
resized to ``size`` x ``size``, the logit map is resized back and thresholded. Weights come from
a local safetensors file written by ``kaleido sod train`` (nothing is downloaded).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kaleido import registry
from kaleido.sod.box import Saliency

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
DEPTH = 3  # encoder stages below the top one: the input side is halved this many times


def check_size(size: int, depth: int = DEPTH) -> int:
    """``size`` if the UNet can halve it ``depth`` times and double it back to the skips' sizes;
    otherwise one line instead of a tensor-size mismatch deep inside ``torch.cat``."""
    step = 2**depth
    if isinstance(size, bool) or not isinstance(size, int) or size < step or size % step:
        hint = f", e.g. {max(step, -(-size // step) * step)}" if isinstance(size, int) else ""
        raise ValueError(f"unet sod size = {size!r} must be a positive multiple of {step} "
                         f"(2**depth: the UNet halves it {depth} times){hint}")
    return size


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skips; ``width`` channels at the top, doubled per stage."""

    def __init__(self, width: int = 16, depth: int = DEPTH) -> None:
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(3, chans[0])] + [_block(chans[i], chans[i + 1])
                                                           for i in range(depth)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2)
                                 for i in reversed(range(depth))])
        self.dec = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(chans[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec, strict=True):
            x = dec(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def to_input(images: list[np.ndarray], size: int) -> torch.Tensor:
    """uint8 H x W x 3 images -> normalised (B, 3, size, size) float tensor."""
    batch = []
    for img in images:
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(255)
        batch.append(F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=True))
    x = torch.cat(batch)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


@registry.sod.register("unet")
class UNetSaliency(Saliency):
    """Learned foreground masks from a small UNet; ``weights`` is a file from `kaleido sod train`."""

    def __init__(self, weights: str = "", size: int = 128, width: int = 16, threshold: float = 0.5,
                 margin: float = 0.05) -> None:
        from safetensors import safe_open

        from kaleido.weights import local_file

        check_size(size)
        if not weights:
            raise ValueError("unet sod needs `weights`: a file written by `kaleido sod train`")
        self.size, self.threshold, self.margin = size, threshold, margin
        self.net = UNet(width=width)
        path = str(local_file(weights, "unet sod"))
        with safe_open(path, framework="pt") as fh:  # one read: the metadata, then the tensors
            trained = fh.metadata() or {}
            # masks at another input size than the training one come out at the wrong scale, silently
            for name, value in (("size", size), ("width", width)):
                if name in trained and int(trained[name]) != value:
                    raise ValueError(f"unet sod weights {weights} were trained with {name} = "
                                     f"{trained[name]}, the recipe sets sod.{name} = {value}")
            state = {key: fh.get_tensor(key) for key in fh.keys()}
        try:
            self.net.load_state_dict(state)
        except RuntimeError as exc:
            raise ValueError(f"unet sod weights {weights} do not fit width={width}: {exc}") from None
        self.net.eval()

    @torch.inference_mode()
    def mask(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        logits = self.net(to_input([image], self.size))
        prob = torch.sigmoid(F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False))
        return prob[0, 0].numpy() > self.threshold
