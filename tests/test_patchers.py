"""Patch geometry: 55 Kaleido boxes that tile their region level by level, the fixed grid, positions."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from kaleido import registry
from kaleido.patchers.layout import grid_layout
from kaleido.recipe.params import params_model


def _check_tiling(boxes: np.ndarray, region: np.ndarray, g: int) -> None:
    """g x g boxes, row-major, edge to edge, covering ``region`` exactly."""
    assert boxes.shape == (g * g, 4)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert np.isclose(area.sum(), (region[2] - region[0]) * (region[3] - region[1]), rtol=1e-5)
    grid = boxes.reshape(g, g, 4)
    np.testing.assert_allclose(grid[:, 0, 0], region[0], atol=1e-4)  # left column starts at the region
    np.testing.assert_allclose(grid[:, -1, 2], region[2], atol=1e-4)
    np.testing.assert_allclose(grid[0, :, 1], region[1], atol=1e-4)
    np.testing.assert_allclose(grid[-1, :, 3], region[3], atol=1e-4)
    np.testing.assert_allclose(grid[:, 1:, 0], grid[:, :-1, 2], atol=1e-4)  # neighbours share edges
    np.testing.assert_allclose(grid[1:, :, 1], grid[:-1, :, 3], atol=1e-4)
    assert (area > 0).all()


def test_kaleido_default_is_55_patches_tiling_each_level():
    patcher = registry.patchers.get("kaleido")()
    region = np.array([12.5, 30.0, 200.0, 250.0], dtype=np.float32)
    layout = patcher.layout(region, 256, 300)
    assert patcher.grids == (1, 2, 3, 4, 5) and len(layout) == 55
    assert np.bincount(layout.levels).tolist() == [0, 1, 4, 9, 16, 25]
    for level, g in enumerate(patcher.grids, start=1):
        sl = layout.level_slice(level)
        assert (layout.levels[sl] == level).all()
        _check_tiling(layout.boxes[sl], region, g)
    np.testing.assert_allclose(layout.region, region, atol=1e-4)


def test_positions_are_normalised_boxes_in_unit_range():
    layout = registry.patchers.get("kaleido")().layout([0, 0, 640, 480], 640, 480)
    pos, b = layout.positions, layout.boxes
    assert pos.shape == (55, 5) and pos.min() >= 0 and pos.max() <= 1
    np.testing.assert_allclose(pos[:, 0], b[:, 0] / 640, atol=1e-6)  # [x1, x2, y1, y2, w*h]
    np.testing.assert_allclose(pos[:, 1], b[:, 2] / 640, atol=1e-6)
    np.testing.assert_allclose(pos[:, 2], b[:, 1] / 480, atol=1e-6)
    np.testing.assert_allclose(pos[:, 3], b[:, 3] / 480, atol=1e-6)
    assert pos[0, 4] == pytest.approx(1.0) and pos[1, 4] == pytest.approx(0.25)  # 1x1, then 2x2
    assert pos[-1].tolist() == pytest.approx([0.8, 1.0, 0.8, 1.0, 0.04])  # last 5x5 patch, bottom right


def test_finer_levels_and_fixed_grid():
    six = registry.patchers.get("kaleido")(levels=7).layout([0, 0, 100, 100], 100, 100)
    assert len(six) == sum(g * g for g in range(1, 8)) and six.grids[-1] == 7
    _check_tiling(six.boxes[six.level_slice(6)], np.array([0, 0, 100, 100.0]), 6)
    fixed = registry.patchers.get("fixed")(grid=8)
    layout = fixed.layout([10, 10, 90, 170], 100, 200)
    assert fixed.grids == (8,) and len(layout) == 64 and (layout.levels == 1).all()
    _check_tiling(layout.boxes, np.array([10, 10, 90, 170.0]), 8)


def test_region_is_clipped_and_empty_region_refused():
    layout = grid_layout([-20, -5, 300, 90], 256, 80, (1, 2))
    np.testing.assert_allclose(layout.boxes[0], [0, 0, 256, 80])
    with pytest.raises(ValueError, match="empty region"):
        grid_layout([50, 50, 50, 80], 100, 100, (1,))
    with pytest.raises(ValueError, match="positive"):
        grid_layout([0, 0, 10, 10], 10, 10, (0, 2))


def test_recipe_parameters_come_from_the_signature():
    schema = params_model(registry.patchers.get("fixed"))
    assert schema(grid=4).grid == 4
    with pytest.raises(ValidationError, match="levels") as info:  # not a parameter of `fixed`
        schema(levels=3)
    assert [(e["type"], e["loc"]) for e in info.value.errors()] == [("extra_forbidden", ("levels",))]
    with pytest.raises(ValueError, match="levels"):
        registry.patchers.get("kaleido")(levels=0)
