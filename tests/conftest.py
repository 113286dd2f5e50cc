"""Shared fixtures: tiny synthetic data made once per session, paths to the real photo set."""

from __future__ import annotations

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
