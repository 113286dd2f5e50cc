"""`read_log`: a half-written last line (a crash mid-write) is ignored quietly; any other line that is
not a log entry is skipped, counted and named in one warning, never dropped in silence."""

from __future__ import annotations

import json
import logging

from kaleido.training.logs import RunLog, read_log

ENTRIES = [{"step": s, "loss": 1.0 / s} for s in (2, 4, 6)]


def _lines(entries) -> list[str]:
    return [json.dumps(e) for e in entries]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kaleido.training.logs" and r.levelno >= logging.WARNING]


def test_a_half_written_last_line_is_ignored_without_a_warning(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(_lines(ENTRIES)) + '\n{"step": 8, "lo', encoding="utf-8")
    with caplog.at_level(logging.DEBUG, logger="kaleido.training.logs"):
        assert read_log(path) == ENTRIES
    assert _warnings(caplog) == []


def test_bad_lines_before_the_last_are_counted_in_one_warning(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    a, b, c = _lines(ENTRIES)
    # a line cut short mid-file, a non-object, a line with an undecodable byte, one blank line
    # (nothing), and a half-written last line (not counted)
    raw = "\n".join([a, '{"step": 3, "lo', "[1, 2]", b, "", c]).encode() + b'\n{"step": 7\xff}\n{"ste'
    path.write_bytes(raw)
    with caplog.at_level(logging.WARNING, logger="kaleido.training.logs"):
        assert read_log(path) == ENTRIES
    assert _warnings(caplog) == [f"{path}: 3 lines not a log entry, skipped (line 2, 3, 7)"]


def test_a_complete_last_line_that_is_not_an_entry_is_counted(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join([*_lines(ENTRIES), '"done"']) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kaleido.training.logs"):
        assert read_log(path) == ENTRIES
    assert _warnings(caplog) == [f"{path}: 1 line not a log entry, skipped (line 4)"]


def test_a_resume_cuts_the_log_and_says_what_it_could_not_read(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    a, b, c = _lines(ENTRIES)
    path.write_text("\n".join([a, "garbage", b, c, '{"step"']), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="kaleido.training.logs"):
        RunLog(tmp_path, resume_step=4, tensorboard=False).close()
    assert _warnings(caplog) == [f"{path}: 1 line not a log entry, skipped (line 2)"]
    assert read_log(path) == ENTRIES[:2]
