"""Rich progress bars on stderr: one look for every long step, and a no-op when progress is off.

Every stage takes ``progress: bool``; with it off (``--no-progress``, a non-main rank, a test)
the same calls do nothing, so no caller branches on whether a bar exists.

    with bar("sat training", total=n, enabled=progress) as b:
        b.advance(1, info="ce 2.1")
    with bars(enabled=progress) as display:         # several bars in one display
        step = display.add("drawing train")         # a ``progress(done, total)`` callback too
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class SpeedColumn(ProgressColumn):
    """``12.3 img/s`` from rich's own speed estimate (rich has no such column); before it has two
    samples (a split of one batch), the images done since the task started over its elapsed time.
    A task's ``resumed`` field (rows an earlier run did) is not counted as done here."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            done = task.completed - task.fields.get("resumed", 0)
            speed = done / task.elapsed if done > 0 else None
        return Text("-- img/s" if speed is None else f"{speed:.1f} img/s", style="progress.data.speed")


class Bar:
    """One bar of a display; every method does nothing when the display is off."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress, self._task = progress, task

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def advance(self, n: float = 1, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)

    def update(self, done: float | None = None, total: float | None = None, **fields: Any) -> None:
        """Set what is done (and the total, the ``description``, the ``info`` text when given)."""
        if self._progress is not None:
            given = {"completed": done, "total": total}
            self._progress.update(self._task, **{k: v for k, v in given.items() if v is not None}, **fields)

    def __call__(self, done: int, total: int) -> None:
        """The ``progress(done, total)`` callback the stages' loops take."""
        self.update(done, total)


class Bars:
    """A display of several bars (one per split, per fine-tuned task ...)."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress

    def add(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> Bar:
        if self._progress is None:
            return Bar()
        fields.setdefault("info", "")
        return Bar(self._progress, self._progress.add_task(description, total=total, completed=completed,
                                                           **fields))


@contextmanager
def bars(*columns: ProgressColumn, enabled: bool = True, transient: bool = False) -> Iterator[Bars]:
    """A display on stderr: description, bar, done/total, ``columns`` (speed, elapsed ...), time
    remaining, and each bar's ``info`` text (a loss, an epoch)."""
    if not enabled:
        yield Bars(None)
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), *columns,
                        TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=Console(stderr=True), transient=transient)
    with progress:
        yield Bars(progress)


@contextmanager
def bar(description: str, total: float | None = None, enabled: bool = True, completed: float = 0,
        columns: tuple[ProgressColumn, ...] = (), transient: bool = False, **fields: Any) -> Iterator[Bar]:
    """A display of one bar."""
    with bars(*columns, enabled=enabled, transient=transient) as display:
        yield display.add(description, total, completed, **fields)
