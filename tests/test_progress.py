"""The one progress-bar helper every long step uses: it shows done/total and the info text, and
with progress off the same calls do nothing (no caller branches on whether a bar exists)."""

from __future__ import annotations

from kaleido.progress import bar, bars


def test_a_bar_shows_what_is_done_and_its_info_on_stderr(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with bar("drawing", enabled=True) as step:
        step(3, 4)  # the (done, total) callback the stages take
        step.advance(1, info="loss 1.250")
    err = capsys.readouterr().err
    assert "drawing" in err and "4/4" in err and "loss 1.250" in err


def test_several_bars_share_one_display(capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    with bars(enabled=True) as display:
        display.add("rank", 20).update(20)
        display.add("fc captions", 30).update(7, info="loss 3.1")
    err = capsys.readouterr().err
    assert "20/20" in err and "7/30" in err and "loss 3.1" in err


def test_with_progress_off_nothing_is_printed(capsys) -> None:
    with bars(enabled=False) as display:
        line = display.add("align", 3)
        line(1, 3)
        line.advance(2, info="x")
        line.update(description="y")
        assert not line.enabled
    with bar("train", 5, enabled=False) as b:
        b.advance()
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
