"""Packaging: every folder of the package is a regular package, so a wheel carries all of it.

setuptools' ``find_packages`` skips folders without ``__init__.py``; an editable install still
imports them (as namespace packages), which once hid a wheel that lacked ``kaleido.data``.
"""

from pathlib import Path

import kaleido

ROOT = Path(kaleido.__file__).parent


def test_every_source_folder_has_an_init():
    folders = {p.parent for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts}
    missing = sorted(str(f.relative_to(ROOT.parent)) for f in folders if not (f / "__init__.py").is_file())
    assert missing == []
