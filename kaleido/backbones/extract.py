"""Patch feature extraction shared by every backbone: the `crop` and `roi` modes and the AKPM views.

- ``crop`` (as FashionBERT; Kaleido-BERT's own extraction was never released): every patch is
  cropped, resized to ``image_size`` and passed through the CNN on its own; its feature is the
  global average of the last map. P backbone passes per image.
- ``roi``: the region the patches tile (their union: the saliency box) is cropped once per
  Kaleido level and resized so that the level's g x g patches each own whole cells of that
  pass's last feature map; a patch's feature is the average of its own cells. One pass per level
  (``roi_maps = "level"``, the default). Why not one map for all levels: pooling is linear in the
  map, and with 16-49 cells under 55 patches every hidden patch (B2CM's blank 5x5, G2CM's colour
  4x4, RR's upright 1x1) is then an exact linear function of the visible ones, so those tasks
  can be solved by a linear layer (measured on real photos: relative error 0.0000).
  The levels of ``roi_separate`` (default: 2x2, the level JPS shuffles) are instead cut into
  their patches, each passed on its own at the level's resolution (the same pixels as the
  level's pass): a patch pooled from a pass over the whole region carries where it was cut
  (which of its borders met the padding, its neighbours' context), so shuffled 2x2 features
  gave the jigsaw answer away without any content (on content-free images a linear probe read a
  2x2 patch's slot 68% of the time, chance 25%, and the permutation 55%, chance 4%; passed one
  by one: 26% / 10%, as ``crop``; ``bench/roi_leak.py``). Shuffling separate patches' features
  is shuffling the image, as SPEC 9 wants; it costs the same pixels as the level's pass.
  ``roi_maps = "shared"`` keeps that single pass (faster; for speed comparisons, or patch sets
  that are not Kaleido levels), pooling each box with ``torchvision.ops.roi_align``.

Crops and resizes are done with ``roi_align`` on the pixels themselves (adaptive sampling
averages several samples per output pixel, so large photos are not aliased), which batches all
the patches of an image in one call. The AKPM views (SPEC 9: computed on transformed *images*,
as the authors did) come from the same path: the 1x1 region rotated by 90/180/270 degrees, and
the grey-scale patches of the 4x4 level.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kaleido.patchers.layout import grid_layout

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
MODES = ("crop", "roi")
ROI_MAPS = ("level", "shared")
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


@functools.cache
def level_sides(grids: tuple[int, ...], base: int) -> list[int]:
    """Per Kaleido level, the side in cells of the map its patches are pooled from, given ``base``,
    the side of the ``image_size`` map. Each side is a multiple of g (every patch owns whole cells),
    no two levels share one (two levels cut from one map are linear in each other again), and none
    is below 3/4 of ``base`` (patches keep about the resolution of a single shared map). Among
    those, the cheapest: the fewest pixels over the levels' passes plus the 1x1 level's three
    rotated passes and the 4x4 level's grey pass (what ``prepare`` runs); ties go to the sides
    nearest ``base``. E.g. base 4 (128 px): [3, 8, 6, 4, 5]; base 7 (224 px): [5, 6, 9, 8, 10].

    An optimum uses only each level's ``len(grids)`` smallest allowed multiples (a level on a larger
    one could move to a smaller one the others leave free), searched depth first with the cheapest
    completion as a bound: milliseconds for any number of levels."""
    lo, n = max(1, round(0.75 * base)), len(grids)
    weight = [1 + 3 * (g == 1) + (g == 4) for g in grids]
    choices = [[g * k for k in range(math.ceil(lo / g), math.ceil(lo / g) + n)] for g in grids]
    order = sorted(range(n), key=lambda i: -grids[i])  # the most constrained levels first
    cheapest = [weight[i] * choices[i][0] ** 2 for i in order]
    bound = [sum(cheapest[k:]) for k in range(n + 1)]
    best: list = [None, (math.inf, math.inf)]

    def search(k: int, used: dict[int, int], pixels: float, distance: float) -> None:
        if k == n:
            if (pixels, distance) < best[1]:
                best[0], best[1] = dict(used), (pixels, distance)
            return
        i = order[k]
        for side in choices[i]:  # ascending cost
            total = pixels + weight[i] * side * side
            if total + bound[k + 1] > best[1][0]:
                break
            if side not in used.values():
                used[i] = side
                search(k + 1, used, total, distance + abs(math.log(side / base)))
                del used[i]

    search(0, {}, 0.0, 0.0)
    return [best[0][i] for i in range(n)]


def check_even_grids(boxes: torch.Tensor, region: torch.Tensor, grids: Sequence[int]) -> None:
    """The per-level passes pool each level's g x g even split of the region; boxes that are
    anything else (a plugin patcher's own cut) would silently get other patches' features."""
    x1, y1, x2, y2 = (float(v) for v in region)
    expected = grid_layout((x1, y1, x2, y2), math.ceil(x2), math.ceil(y2), grids).boxes  # the same cut
    if not torch.allclose(boxes.float(), torch.from_numpy(expected), atol=0.5):
        raise ValueError(f"roi_maps = 'level' needs every level to be an even g x g grid of one region, "
                         f"level after level, row-major (as the kaleido and fixed patchers cut); these "
                         f"boxes are not, for grids {list(grids)}: use roi_maps = 'shared' or mode = 'crop'")


class Backbone(nn.Module):
    """A CNN trunk (image -> last feature map) plus batched `crop` / `roi` patch extraction."""

    def __init__(self, trunk: nn.Module, feature_dim: int, mode: str, image_size: int, batch_size: int,
                 device: str, roi_output: int = 2, roi_maps: str = "level",
                 roi_separate: Sequence[int] = (2,)) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"backbone mode must be one of {MODES}, got {mode!r}")
        if roi_maps not in ROI_MAPS:
            raise ValueError(f"backbone roi_maps must be one of {ROI_MAPS}, got {roi_maps!r}")
        if any(int(g) < 1 for g in roi_separate):
            raise ValueError(f"backbone roi_separate names grid sizes (>= 1), got {list(roi_separate)}")
        if image_size < 32 or batch_size < 1 or roi_output < 1:
            raise ValueError(f"need image_size >= 32, batch_size >= 1, roi_output >= 1 (got {image_size}, "
                             f"{batch_size}, {roi_output})")
        self.trunk = _inference_trunk(trunk)
        self._source = [trunk]  # the unfused trunk (not a submodule): earlier maps are cut from it
        self._prefixes: dict[int, nn.Module] = {}
        self.feature_dim, self.mode, self.roi_maps = feature_dim, mode, roi_maps
        self.roi_separate = frozenset(int(g) for g in roi_separate)
        self._stride: int | None = None
        self.image_size, self.batch_size, self.roi_output = image_size, batch_size, roi_output
        self.device = resolve_device(device)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.to(self.device)
        trunk.to(self.device)  # not a submodule, so .to above does not move it (a CUDA run needs it there)
        self.passes = 0  # backbone images forwarded, for benchmarks and reports

    @staticmethod
    def inert_params(params: dict) -> set[str]:
        """The recipe parameters that change nothing this backbone computes with these ``params``
        (left out of the feature store's key): in ``crop`` mode, the ``roi`` ones."""
        return {"roi_output", "roi_maps", "roi_separate"} if params.get("mode") == "crop" else set()

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
    def extract(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray],
                grids: Sequence[int] | None = None) -> torch.Tensor:
        """Patch features (B, P, D) float32 on the CPU; ``boxes[b]`` is image b's (P, 4) pixel boxes
        (``grids``: see :meth:`views`)."""
        return self.views(images, boxes, rotations=False, grey=None, grids=grids).features

    @torch.inference_mode()
    def views(self, images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], rotations: bool = True,
              grey: slice | None = None, grids: Sequence[int] | None = None) -> Views:
        """Patch features plus the AKPM views: the region rotated 90/180/270, and grey ``boxes[grey]``.

        ``grids``: the Kaleido levels the boxes are (each a g x g row-major grid of one region,
        level after level, as :func:`kaleido.patchers.layout.grid_layout` makes them); ``roi``
        mode then pools each level from its own pass. Without it the boxes are pooled from one map."""
        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box sets")
        box_t = [torch.as_tensor(np.asarray(b, dtype=np.float32)) for b in boxes]
        counts = {len(b) for b in box_t}
        if len(counts) > 1:
            raise ValueError(f"every image needs the same number of patches, got {sorted(counts)}")
        if grids is not None and box_t and sum(g * g for g in grids) != len(box_t[0]):
            raise ValueError(f"grids {list(grids)} make {sum(g * g for g in grids)} patches, the boxes "
                             f"are {len(box_t[0])}")
        bsz = len(images)
        if self.mode == "roi" and self.roi_maps == "level" and grids is not None:
            feats, rots, greys = self._views_levels(images, box_t, tuple(grids), rotations, grey)
        elif self.mode == "roi":
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

    def stride(self) -> int:
        """The trunk's output stride in pixels (32 for MobileNetV2 and ResNet-50), probed once."""
        if self._stride is None:
            with torch.inference_mode():
                side = self.trunk(torch.zeros(1, 3, 512, 512, device=self.device)).shape[-1]
            self._stride = max(1, 512 // side)
        return self._stride

    def level_sides(self, grids: Sequence[int]) -> list[int]:
        """Per level, the side in cells of its pass's map (see :func:`level_sides`)."""
        return level_sides(tuple(grids), max(1, round(self.image_size / self.stride())))

    def level_passes(self, grids: Sequence[int]) -> list[list[int]]:
        """Per level, the sides in pixels of the passes per-level ``roi`` runs for one image: the
        region once, or each of the g x g patches alone for the levels of ``roi_separate``."""
        stride = self.stride()
        return [[side // g * stride] * (g * g) if g in self.roi_separate else [side * stride]
                for g, side in zip(grids, self.level_sides(grids), strict=True)]

    def _level_pass(self, images, regions, g: int, side: int, transform=None, boxes=None) -> torch.Tensor:
        """Every image's region at ``side`` cells through the trunk, each of the g x g patches the
        average of its own cells: (B, g * g, D), row-major. With ``boxes`` (each image's g * g
        boxes of this level), every patch is passed on its own at ``side / g`` cells instead."""
        if boxes is not None:
            crops = torch.cat([self._crops(img, b, side // g * self.stride())
                               for img, b in zip(images, boxes, strict=True)])
            if transform is not None:
                crops = transform(crops)
            return self.maps(crops).mean(dim=(2, 3)).view(len(images), g * g, -1)
        size = side * self.stride()
        crops = torch.cat([self._crops(img, r[None], size) for img, r in zip(images, regions, strict=True)])
        if transform is not None:
            crops = transform(crops)
        fmaps = self.maps(crops)
        if fmaps.shape[-1] != side or fmaps.shape[-2] != side:  # a trunk whose map is not size / stride
            fmaps = F.adaptive_avg_pool2d(fmaps, side)
        return F.avg_pool2d(fmaps, side // g).flatten(2).transpose(1, 2)

    def _views_levels(self, images, box_t, grids, rotations, grey):
        regions = [self._region(b) for b in box_t]
        for boxes, region in zip(box_t, regions, strict=True):
            check_even_grids(boxes, region, grids)
        n, sides = len(images), self.level_sides(grids)
        starts = np.cumsum([0, *[g * g for g in grids]])

        def separate(i: int) -> list[torch.Tensor] | None:
            """Level i's boxes per image when its patches are passed one by one, else None."""
            return [b[starts[i]:starts[i + 1]] for b in box_t] if grids[i] in self.roi_separate else None

        feats = torch.cat([self._level_pass(images, regions, g, side, boxes=separate(i))
                           for i, (g, side) in enumerate(zip(grids, sides, strict=True))], dim=1)
        rots = feats.new_zeros((n, 0, self.feature_dim))
        if rotations:  # the 1x1 region turned, at the 1x1 level's own resolution when there is one
            side = sides[grids.index(1)] if 1 in grids else max(1, round(self.image_size / self.stride()))
            rots = torch.stack([self._level_pass(images, regions, 1, side,
                                                 lambda x, k=k: torch.rot90(x, k, dims=(2, 3)))[:, 0]
                                for k in (1, 2, 3)], dim=1)
        greys = feats.new_zeros((0, self.feature_dim))
        if grey is not None:  # the grey slice is one level's patches: that level's pass, in grey
            level = next((i for i, g in enumerate(grids) if range(starts[i], starts[i + 1]) ==
                          range(*grey.indices(int(starts[-1])))), None)
            if level is None:
                raise ValueError(f"grey patches {grey} are not one level of grids {list(grids)}")
            greys = self._level_pass(images, regions, grids[level], sides[level], grey_scale,
                                     separate(level)).flatten(0, 1)
        return feats.flatten(0, 1), rots, greys

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
