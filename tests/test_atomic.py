"""kaleido.atomic: a file or folder is replaced whole, or left as it was, and no temporary stays."""

from __future__ import annotations

import pytest

from kaleido.atomic import atomic_file, atomic_folder, is_temporary, write_json


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


def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path) -> None:
    path = tmp_path / "sub" / "report.json"
    write_json(path, {"v": 1})
    assert path.read_text() == '{\n "v": 1\n}'
    with pytest.raises(OSError), atomic_file(path) as tmp:
        assert tmp.parent == path.parent and tmp.suffix == ".json" and is_temporary(tmp)
        tmp.write_text('{"v": 2')  # half a file, then the disk fills up
        raise OSError("disk full")
    assert path.read_text() == '{\n "v": 1\n}'  # the previous version, not the torn one
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_file(path):
        pass  # a writer that wrote nothing must not leave an empty file behind
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporaries left
    write_json(path, {"v": 3}, indent=None)
    assert path.read_text() == '{"v": 3}'
    assert not is_temporary(path)


def test_a_file_that_cannot_be_flushed_is_an_error_and_the_old_version_stays(tmp_path, monkeypatch) -> None:
    import os

    path = tmp_path / "state.json"
    write_json(path, {"v": 1})

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output error"):
        write_json(path, {"v": 2})
    assert path.read_text() == '{\n "v": 1\n}' and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_saved_folder_has_the_umask_mode_not_a_private_one(tmp_path) -> None:
    """mkdtemp's 0700 survived the rename: other users of a cluster could not read a model."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "model") as tmp:
            (tmp / "weights").write_text("v1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755


def test_a_killed_save_is_cleared_by_the_next_and_a_parked_version_put_back(tmp_path) -> None:
    """A kill leaves ``.model.tmp-*`` (mid-write) or, between the swap's two renames, no folder and
    the previous version as ``.model.old-*``; the next save of the folder settles both."""
    folder = tmp_path / "model"
    half = tmp_path / ".model.tmp-dead0001"
    half.mkdir()
    (half / "weights").write_text("half")
    parked = tmp_path / ".model.old-dead0002"
    parked.mkdir()
    (parked / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        assert sorted(p.name for p in tmp_path.iterdir()) == [tmp.name, "model"]
        assert (folder / "weights").read_text() == "v1"  # the parked version is back
        raise RuntimeError("this save fails too")
    assert (folder / "weights").read_text() == "v1"
    with atomic_folder(folder) as tmp:
        (tmp / "weights").write_text("v2")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert (folder / "weights").read_text() == "v2"
