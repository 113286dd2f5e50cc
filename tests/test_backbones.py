"""Backbones: `crop` and `roi` agree on shape and dtype, crop/roi geometry, AKPM views, weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kaleido import registry
from kaleido.patchers.layout import grid_layout

SIZE = 64  # tiny inputs keep these tests fast; geometry does not depend on it


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def nets():
    """The offline ImageNet MobileNetV2 (a random one's activations vanish through eval-mode BN)."""
    crop = registry.backbones.get("mobilenet_v2")(mode="crop", image_size=SIZE, device="cpu")
    roi = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=SIZE, device="cpu")
    return crop, roi


def _image(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_crop_and_roi_give_same_shape_and_dtype(nets):
    images = [_image(80, 96, 0), _image(120, 60, 1)]
    boxes = [grid_layout([8, 4, 90, 70], 96, 80, (1, 2)).boxes,
             grid_layout([0, 0, 60, 120], 60, 120, (1, 2)).boxes]
    before = [net.passes for net in nets]
    outs = [net.extract(images, boxes, grids=(1, 2)) for net in nets] + [nets[1].extract(images, boxes)]
    assert outs[0].shape == outs[1].shape == outs[2].shape == (2, 5, 1280)
    assert outs[0].dtype == outs[1].dtype == outs[2].dtype == torch.float32
    assert all(torch.isfinite(out).all() for out in outs)
    # crop: one pass per patch (2 x 5); roi: per image one for the 1x1 level and one per 2x2 patch
    # (passed on its own: `roi_separate`), then one shared map per image when the boxes are not levels
    assert [net.passes - b for net, b in zip(nets, before, strict=True)] == [10, 2 * (1 + 4) + 2]


def test_crop_feature_is_the_patch_on_its_own(nets):
    crop, _ = nets
    image = _image(150, 120, 2)
    # a SIZE x SIZE box is resampled 1:1, so the crop must equal the slice exactly
    box = np.array([[20, 40, 20 + SIZE, 40 + SIZE]], np.float32)
    alone = np.ascontiguousarray(image[40:40 + SIZE, 20:20 + SIZE])
    whole = np.array([[0, 0, SIZE, SIZE]], np.float32)
    reference = crop.extract([alone], [whole])
    torch.testing.assert_close(crop.extract([image], [box]), reference, rtol=1e-5, atol=1e-5)
    shifted = box + np.array([[1, 0, 1, 0]], np.float32)
    assert not torch.allclose(crop.extract([image], [shifted]), reference, atol=1e-3)


def test_roi_features_depend_only_on_the_region():
    roi = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=128, device="cpu")  # 4x4 map
    image = _image(100, 120, 3)
    boxes = grid_layout([30, 20, 90, 80], 120, 100, (1, 2)).boxes
    base = roi.extract([image], [boxes])
    outside = image.copy()
    outside[:15] = 0  # rows above the region
    outside[:, 95:] = 255  # columns right of it
    torch.testing.assert_close(roi.extract([outside], [boxes]), base)
    inside = image.copy()
    inside[25:45, 35:55] = 0  # the top-left corner of the region
    changed = (roi.extract([inside], [boxes]) - base).abs().sum(-1)[0]
    assert changed[0] > 0  # the whole region sees it
    # 2x2 level: the top-left patch changes more than the bottom-right one
    assert changed[1] > 1.5 * changed[4]


def _myntra(n: int) -> list[np.ndarray]:
    from PIL import Image

    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "myntra-500" / "images"
    paths = sorted(folder.rglob("*.jpg"))[:n]
    if len(paths) < n:
        pytest.skip(f"needs {n} photos of ../shared/data/myntra-500")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def _roi_leak():
    """bench/roi_leak.py, the study whose figures docs/PERFORMANCE.md keeps (one fit, not a copy)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("roi_leak", Path(__file__).resolve().parents[1] / "bench"
                                                  / "roi_leak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roi_levels_do_not_give_a_hidden_patch_away_as_a_linear_function_of_the_visible_ones():
    """One shared map makes every patch an average of the same cells, so with more patches than
    cells B2CM's blanked 5x5 patches, G2CM's colour 4x4 patches and RR's upright 1x1 region are exact
    linear functions of the visible patches (error 0 on real photos); a pass per level is not."""
    leak = _roi_leak()
    images = _myntra(12)
    boxes = [grid_layout([0, 0, w, h], w, h, leak.GRIDS).boxes for h, w, _ in (im.shape for im in images)]
    errors = {}
    for maps in ("shared", "level"):
        net = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=SIZE, device="cpu", roi_maps=maps)
        errors[maps] = leak.errors(net.extract(images, boxes, grids=leak.GRIDS).numpy())
    assert all(error < 1e-3 for error in errors["shared"].values()), errors
    assert all(error > 0.1 for error in errors["level"].values()), errors


def test_shuffling_the_jigsaw_level_features_is_shuffling_the_image():
    """JPS shuffles the 2x2 level's features, which SPEC 9 wants to be the same as shuffling the
    image's quadrants. With the 2x2 patches passed one by one (``roi_separate``, default [2]) it is;
    pooled from one pass over the region, each quadrant also carries where it was cut (which borders
    met the padding, its neighbours), and the jigsaw could be solved without looking at content."""
    quads = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    quads[:, :2] = quads[:, -2:] = quads[:, :, :2] = quads[:, :, -2:] = 0  # resampling reads no neighbour

    def tiled(order: tuple[int, ...]) -> np.ndarray:
        q = quads[list(order)]
        return np.ascontiguousarray(np.concatenate([np.concatenate(q[:2], 1), np.concatenate(q[2:], 1)]))

    perm = (2, 0, 3, 1)  # slot k shows quadrant perm[k]
    boxes = grid_layout([0, 0, 64, 64], 64, 64, (1, 2)).boxes
    for separate, same in (([2], True), ([], False)):
        net = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=SIZE, device="cpu",
                                                     roi_separate=separate)
        base = net.extract([tiled((0, 1, 2, 3))], [boxes], grids=(1, 2))[0, 1:]
        moved = net.extract([tiled(perm)], [boxes], grids=(1, 2))[0, 1:]
        error = float((moved - base[list(perm)]).abs().max() / base.abs().max())
        assert (error < 1e-4) == same, (separate, error)


def test_level_sides_give_each_patch_whole_cells_of_its_own_map():
    from kaleido.backbones.extract import level_sides

    for base in (2, 4, 5, 7, 16):
        for grids in ((1, 2, 3, 4, 5), (1, 2), (5,), (2, 4), tuple(range(1, 11))):  # ten levels: still quick
            sides = level_sides(grids, base)
            assert all(side % g == 0 for side, g in zip(sides, grids, strict=True))  # whole cells
            assert len(set(sides)) == len(sides)  # no two levels from one map
            assert min(sides) >= round(0.75 * base)  # about the shared map's resolution, not below
    assert level_sides((1, 2, 3, 4, 5), 4) == [3, 8, 6, 4, 5]  # the quickstart's 128 px


def test_a_level_patch_sees_its_own_corner_of_the_region_most():
    roi = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=128, device="cpu")
    image = _image(100, 120, 3)
    boxes = grid_layout([30, 20, 90, 80], 120, 100, (1, 2)).boxes
    base = roi.extract([image], [boxes], grids=(1, 2))
    outside = image.copy()
    outside[:15] = 0
    outside[:, 95:] = 255
    torch.testing.assert_close(roi.extract([outside], [boxes], grids=(1, 2)), base)  # only the region counts
    inside = image.copy()
    inside[25:45, 35:55] = 0  # the top-left corner of the region
    changed = (roi.extract([inside], [boxes], grids=(1, 2)) - base).abs().sum(-1)[0]
    assert changed[0] > 0 and changed[1] > 1.5 * changed[4]
    with pytest.raises(ValueError, match="make 10 patches, the boxes are 5"):
        roi.extract([image], [boxes], grids=(1, 3))
    uneven = boxes.copy()
    uneven[1:, [0, 2]] = [[30, 50], [50, 90], [30, 50], [50, 90]]  # the 2x2 level cut at 1/3, not 1/2
    with pytest.raises(ValueError, match="even g x g grid"):
        roi.extract([image], [uneven], grids=(1, 2))
    shared = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=128, device="cpu",
                                                    roi_maps="shared")
    assert shared.extract([image], [uneven], grids=(1, 2)).shape == (1, 5, 1280)  # pools any boxes


def test_rotation_and_grey_views_are_the_transformed_images(nets):
    crop, roi = nets
    image = _image(90, 80, 4)
    # a SIZE x SIZE region is resampled 1:1, so its crop is exactly this slice
    layout = grid_layout([10, 5, 10 + SIZE, 5 + SIZE], 80, 90, (1, 2, 3, 4))
    gs = layout.level_slice(4)
    region = np.ascontiguousarray(image[5:5 + SIZE, 10:10 + SIZE])
    for net in (crop, roi):
        views = net.views([image], [layout.boxes], rotations=True, grey=gs)
        assert views.features.shape == (1, 30, 1280)
        assert views.rotations.shape == (1, 3, 1280) and views.grey.shape == (1, 16, 1280)
        for k in (1, 2, 3):
            rotated = np.ascontiguousarray(np.rot90(region, k))
            whole = np.array([[0, 0, rotated.shape[1], rotated.shape[0]]], np.float32)
            torch.testing.assert_close(views.rotations[0, k - 1], net.extract([rotated], [whole])[0, 0],
                                       rtol=1e-3, atol=1e-3)
        assert not torch.allclose(views.rotations[0, 0], views.features[0, 0], atol=1e-3)
    # per level: the rotated region at the 1x1 level's own resolution, the grey 4x4 level from a pass
    grids = (1, 2, 3, 4)
    views = roi.views([image], [layout.boxes], rotations=True, grey=gs, grids=grids)
    px = roi.level_sides(grids)[0] * roi.stride()
    for k in (1, 2, 3):
        rotated = np.ascontiguousarray(np.rot90(region, k))
        reference = roi.feature_map([rotated], image_size=px).mean(dim=(2, 3))[0]
        torch.testing.assert_close(views.rotations[0, k - 1], reference, rtol=1e-3, atol=1e-3)
    grey_image = np.repeat((image @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=2).round()
    reference = roi.extract([grey_image.astype(np.uint8)], [layout.boxes], grids=grids)[:, gs]
    torch.testing.assert_close(views.grey, reference, rtol=0.05, atol=0.05)  # uint8 rounding only
    views = crop.views([image], [layout.boxes], rotations=False, grey=gs)
    reference = crop.extract([grey_image.astype(np.uint8)], [layout.boxes[gs]])
    torch.testing.assert_close(views.grey, reference, rtol=0.05, atol=0.05)  # uint8 rounding only
    assert views.rotations.shape == (1, 0, 1280)


def test_feature_map_and_resnet_and_bad_mode():
    net = registry.backbones.get("resnet50")(mode="roi", image_size=SIZE, weights="none", device="cpu")
    assert net.feature_dim == 2048
    fmap = net.feature_map([_image(70, 50, 5), _image(64, 64, 6)])
    assert fmap.shape == (2, 2048, 2, 2)
    with pytest.raises(ValueError, match="mode"):
        registry.backbones.get("mobilenet_v2")(mode="grid", weights="none")


def test_resnet_without_weights_raises_and_never_downloads(monkeypatch):
    """The default ``weights = ""`` names what to give in one line; torchvision is never asked for its
    IMAGENET1K download (nothing is fetched at run time)."""
    import torchvision.models
    import torchvision.models._api

    from kaleido.weights import MissingWeights

    def no_download(*args, **kwargs):
        pytest.fail("resnet50 must not build torchvision's downloading model or fetch a URL")

    monkeypatch.setattr(torchvision.models, "resnet50", no_download)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.raises(MissingWeights) as info:
        registry.backbones.get("resnet50")(mode="roi", image_size=SIZE, device="cpu")
    message = str(info.value)
    assert "\n" not in message
    assert "backbone.weights" in message and "local .pth file" in message
    assert "ResNet-50 ImageNet weights" in message and '"none" for random weights' in message
    with pytest.raises(MissingWeights, match="nothing is downloaded"):
        registry.backbones.get("resnet50")(weights="/nonexistent/resnet50.pth")


def test_offline_mobilenet_weights_load_and_differ_from_random(nets):
    from kaleido.weights import mobilenet_v2_file

    saved = torch.load(mobilenet_v2_file(), map_location="cpu", weights_only=True)
    loaded = nets[1]._source[0]  # the unfused trunk (the running one has its batch norms folded in)
    for key in ("0.0.weight", "0.1.running_var", "18.0.weight"):  # the first and the last convolutions
        assert torch.equal(loaded.state_dict()[key], saved[f"features.{key}"]), key
    random = registry.backbones.get("mobilenet_v2")(mode="roi", image_size=SIZE, weights="none", device="cpu")
    assert not torch.equal(next(random.trunk.parameters()), next(nets[1].trunk.parameters()))
    assert not torch.equal(random._source[0].state_dict()["0.0.weight"], saved["features.0.0.weight"])
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        registry.backbones.get("mobilenet_v2")(weights="/nonexistent/weights.pth")
