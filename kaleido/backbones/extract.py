"""Patch feature extraction shared by every backbone: the `crop` and `roi` modes and the AKPM views.

- ``crop`` (FashionBERT, Kaleido-BERT): every patch is cropped, resized to ``image_size`` and
  passed through the CNN on its own; its feature is the global average of the last map.
  P backbone passes per image.
- ``roi``: the region the patches tile (their union: the saliency box) is cropped and resized
  to ``image_size`` once; every patch is pooled from the last feature map with
  ``torchvision.ops.roi_align``. One pass per image.

Crops and resizes are done with ``roi_align`` on the pixels themselves (adaptive sampling
averages several samples per output pixel, so large photos are not aliased), which batches all
the patches of an image in one call. The AKPM views (SPEC 9: computed on transformed *images*,
as the authors did) come from the same path: the 1x1 region rotated by 90/180/270 degrees, and
the grey-scale patches of the 4x4 level.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODES = ("crop", "roi")
GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma


@dataclass
class Views:
    """Features of one batch: patches (B, P, D), rotated 1x1 (B, 3, D), grey patches (B, G, D)."""

    features: torch.Tensor
    rotations: torch.Tensor
    grey: torch.Tensor


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def grey_scale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> the same shape, every channel the luma."""
    w = torch.tensor(GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand_as(x).contiguous()


def roi_align(*args, **kwargs) -> torch.Tensor:
    """``torchvision.ops.roi_align``, imported on first use: torchvision's import costs seconds,
    and `kaleido check` / `kaleido components` import this module only for its signatures."""
    from torchvision.ops import roi_align as _roi_align

    return _roi_align(*args, **kwargs)


def _inference_trunk(trunk: nn.Module) -> nn.Module:
    """The frozen trunk made fast for inference: batch norms folded into their convolutions and
    channels-last memory (about 1.8x faster for MobileNetV2's depthwise convolutions on CPU)."""
    trunk = trunk.eval()
    try:
        from torch.fx.experimental.optimization import fuse

        trunk = fuse(trunk)
    except Exception:  # a trunk fx cannot trace stays unfused: same features, a little slower
        pass
    return trunk.to(memory_format=torch.channels_last)


class Backbone(nn.Module):
    """A CNN trunk (image -> last feature map) plus batched `crop` / `roi` patch extraction."""

    def __init__(self, trunk: nn.Module, feature_dim: int, mode: str, image_size: int, batch_size: int,
                 device: str, roi_output: int = 2) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"backbone mode must be one of {MODES}, got {mode!r}")
        if image_size < 32 or batch_size < 1 or roi_output < 1:
            raise ValueError(f"need image_size >= 32, batch_size >= 1, roi_output >= 1 (got {image_size}, "
                             f"{batch_size}, {roi_output})")
        self.trunk = _inference_trunk(trunk)
        self._source = [trunk]  # the unfused trunk (not a submodule): earlier maps are cut from it
        self._prefixes: dict[int, nn.Module] = {}
        self.feature_dim, self.mode = feature_dim, mode
        self.image_size, self.batch_size, self.roi_output = image_size, batch_size, roi_output
        self.device = resolve_device(device)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.to(self.device)
        trunk.to(self.device)  # not a submodule, so .to above does not move it (a CUDA run needs it there)
        self.passes = 0  # backbone images forwarded, for benchmarks and reports

    # -- pixels -------------------------------------------------------------------------------
    def _pixels(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """H x W x 3 uint8 -> (1, 3, H, W) float in [0, 1] on the device."""
        if isinstance(image, np.ndarray) and not image.flags.writeable:
            image = image.copy()  # read-only rows (memory maps, decoded buffers): torch wants writable
        t = torch.as_tensor(image)
        if t.ndim != 3 or t.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 image, got shape {tuple(t.shape)}")
        return t.to(self.device, non_blocking=True).permute(2, 0, 1)[None].float().div_(255)

    def _crops(self, image: np.ndarray | torch.Tensor, boxes: torch.Tensor, size: int | None = None
               ) -> torch.Tensor:
        """(K, 4) pixel boxes of one image -> (K, 3, S, S) resized crops (S: ``size`` or image_size),
        anti-aliased."""
        s = self.image_size if size is None else int(size)
        return roi_align(self._pixels(image), [boxes.to(self.device, torch.float32)], output_size=(s, s),
                         spatial_scale=1.0, sampling_ratio=-1, aligned=True)

    # -- backbone ------------------------------------------------------------------------------
    def maps(self, x: torch.Tensor, trunk: nn.Module | None = None) -> torch.Tensor:
        """(N, 3, S, S) pixels in [0, 1] -> (N, D, h, w) last feature maps (or ``trunk``'s), in chunks."""
        trunk = self.trunk if trunk is None else trunk
        out = []
        for i in range(0, len(x), self.batch_size):
            chunk = (x[i:i + self.batch_size] - self.mean) / self.std
            out.append(trunk(chunk.contiguous(memory_format=torch.channels_last)).contiguous())
        self.passes += len(x)
        return torch.cat(out) if out else x.new_zeros((0, self.feature_dim, 1, 1))

    def _pool(self, fmaps: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """roi_align each map's boxes (in the S x S frame) and average: (sum K, D)."""
        scale = fmaps.shape[-1] / self.image_size
        r = self.roi_output
        pooled = roi_align(fmaps, [b.to(fmaps.device, fmaps.dtype) for b in boxes], output_size=(r, r),
                           spatial_scale=scale, sampling_ratio=2, aligned=True)
        return pooled.mean(dim=(2, 3))

    def _prefix(self, stride: int) -> nn.Module:
        """The trunk cut after its last layer of output stride ``stride`` (sequential trunks only)."""
        if stride not in self._prefixes:
            source = self._source[0]  # on the device since __init__
            if not isinstance(source, nn.Sequential):
                raise ValueError(f"feature_map(stride={stride}) needs a sequential trunk")
            x, cut, size = torch.zeros(1, 3, 64, 64, device=self.device), 0, 64
            with torch.inference_mode():
                for k, layer in enumerate(source.eval()):
                    x = layer(x)
                    if x.ndim == 4 and x.shape[-1] * stride == size:
                        cut = k + 1
            if not cut:
                raise ValueError(f"the backbone has no feature map at stride {stride}")
            self._prefixes[stride] = _inference_trunk(copy.deepcopy(source[:cut]))
        return self._prefixes[stride]

    @torch.inference_mode()
    def feature_map(self, images: Sequence[np.ndarray] | torch.Tensor, stride: int | None = None,
                    image_size: int | None = None) -> torch.Tensor:
        """Whole images resized to ``image_size`` (default the backbone's) -> (B, D, h, w): the last
        feature map, or with ``stride`` the trunk's last map of that output stride (e.g. 16: a finer,
        more local grid; what the SAT aligner attends over). ``stride = 1`` is the normalised pixels
        themselves (the colour-preserving stream the SAT aligner can pool next to a deep map)."""
        crops = [self._crops(img, torch.tensor([[0, 0, img.shape[1], img.shape[0]]], dtype=torch.float32),
                             image_size)
                 for img in images]
        if stride is not None and int(stride) == 1:
            return ((torch.cat(crops) - self.mean) / self.std).contiguous()
        return self.maps(torch.cat(crops), None if stride is None else self._prefix(int(stride)))

    @torch.inference_mode()
    def extract(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray]) -> torch.Tensor:
        """Patch features (B, P, D) float32 on the CPU; ``boxes[b]`` is image b's (P, 4) pixel boxes."""
        return self.views(images, boxes, rotations=False, grey=None).features

    @torch.inference_mode()
    def views(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], rotations: bool = True,
              grey: slice | None = None) -> Views:
        """Patch features plus the AKPM views: the region rotated 90/180/270, and grey ``boxes[grey]``."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box sets")
        box_t = [torch.as_tensor(np.asarray(b, dtype=np.float32)) for b in boxes]
        counts = {len(b) for b in box_t}
        if len(counts) > 1:
            raise ValueError(f"every image needs the same number of patches, got {sorted(counts)}")
        bsz = len(images)
        if self.mode == "roi":
            feats, rots, greys = self._views_roi(images, box_t, rotations, grey)
        else:
            feats, rots, greys = self._views_crop(images, box_t, rotations, grey)
        d = self.feature_dim
        n_grey = len(range(*grey.indices(len(box_t[0])))) if grey is not None and bsz else 0
        return Views(features=feats.float().cpu().view(bsz, -1, d),
                     rotations=rots.float().cpu().view(bsz, 3 if rotations else 0, d),
                     grey=greys.float().cpu().view(bsz, n_grey, d))

    def _region(self, boxes: torch.Tensor) -> torch.Tensor:
        return torch.stack([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])

    def _views_roi(self, images, box_t, rotations, grey):
        s = self.image_size
        regions = [self._region(b) for b in box_t]
        crops = torch.cat([self._crops(img, r[None]) for img, r in zip(images, regions, strict=True)])
        # boxes in the S x S frame of their region's crop
        local = []
        for b, r in zip(box_t, regions, strict=True):
            sx, sy = s / (r[2] - r[0]), s / (r[3] - r[1])
            local.append(torch.stack([(b[:, 0] - r[0]) * sx, (b[:, 1] - r[1]) * sy,
                                      (b[:, 2] - r[0]) * sx, (b[:, 3] - r[1]) * sy], dim=1))
        batch = [crops]
        if rotations:
            batch += [torch.rot90(crops, k, dims=(2, 3)) for k in (1, 2, 3)]
        if grey is not None:
            batch.append(grey_scale(crops))
        fmaps = self.maps(torch.cat(batch))
        n = len(crops)
        feats = self._pool(fmaps[:n], local)
        whole = torch.tensor([[0.0, 0.0, s, s]])
        rots = (self._pool(fmaps[n:4 * n], [whole] * 3 * n).view(3, n, -1).transpose(0, 1)
                if rotations else fmaps.new_zeros((n, 0, self.feature_dim)))
        greys = (self._pool(fmaps[-n:], [b[grey] for b in local]) if grey is not None
                 else fmaps.new_zeros((0, self.feature_dim)))
        return feats, rots, greys

    def _gap(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps(x).mean(dim=(2, 3))

    def _views_crop(self, images, box_t, rotations, grey):
        feats, rots, greys = [], [], []
        for img, b in zip(images, box_t, strict=True):
            crops = self._crops(img, b)
            feats.append(self._gap(crops))
            if rotations:
                region = self._crops(img, self._region(b)[None])
                rots.append(self._gap(torch.cat([torch.rot90(region, k, dims=(2, 3)) for k in (1, 2, 3)])))
            if grey is not None:
                greys.append(self._gap(grey_scale(crops[grey])))
        empty = torch.zeros((0, self.feature_dim), device=self.device)
        return (torch.cat(feats), torch.cat(rots) if rots else empty, torch.cat(greys) if greys else empty)
