"""Shared fixtures: tiny synthetic data made once per session, paths to the real photo set."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
MYNTRA = REPO.parent / "shared" / "data" / "myntra-500"


@pytest.fixture(scope="session")
def myntra_dir() -> Path:
    if not (MYNTRA / "pairs.jsonl").is_file():
        pytest.skip("../shared/data/myntra-500 is not beside this checkout")
    return MYNTRA


def _one_torch_thread():
    """Tiny models are overhead-bound: two torch threads on a shared 2-core box only fight."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


one_thread = pytest.fixture(_one_torch_thread, name="one_thread")
one_thread_per_module = pytest.fixture(_one_torch_thread, scope="module", name="one_thread_per_module")


TINY_RECIPE = REPO / "tests" / "recipes" / "tiny.toml"


def write_tiny_recipe(root: Path, overrides: list[str] | tuple[str, ...] = (),
                      name: str = "tiny.toml") -> Path:
    """``tests/recipes/tiny.toml`` with its outputs and data under ``root`` and ``overrides`` applied
    (``section.key=value``, exactly as ``--set`` takes them), written resolved to ``root / name`` so a
    subprocess, the CLI or ``load_recipe`` read the same recipe."""
    from kaleido.recipe import load_recipe

    at_root = [f"output_dir={json.dumps(str(root / 'runs'))}", f"data.dir={json.dumps(str(root / 'data'))}"]
    path = Path(root) / name
    load_recipe(TINY_RECIPE, [*at_root, *overrides]).dump(path)
    return path


@pytest.fixture(scope="session")
def tiny_recipe():
    """The shared tiny recipe writer (see :func:`write_tiny_recipe`)."""
    return write_tiny_recipe
