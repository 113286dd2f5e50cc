"""kaleido.models.folder.atomic_folder: a save replaces the folder whole, or leaves it as it was."""

from __future__ import annotations

import pytest

from kaleido.models.folder import atomic_folder


def test_a_save_replaces_the_folder_whole_and_a_failed_one_changes_nothing(tmp_path) -> None:
    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("v1")
        (tmp / "heads").write_text("v1 heads")
    with atomic_folder(folder) as tmp:  # a bare model saved over an objective folder
        (tmp / "weights").write_text("v2")
    assert sorted(p.name for p in folder.iterdir()) == ["weights"]  # no stale heads paired with v2
    assert (folder / "weights").read_text() == "v2"
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("v3, half")
        raise RuntimeError("crash mid-save")
    assert (folder / "weights").read_text() == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folders left behind
