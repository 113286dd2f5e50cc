"""A rich progress bar (items/s and ETA) that turns into a no-op when progress is off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1, **fields: object) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=n, **fields)


@contextmanager
def bar(description: str, total: int, enabled: bool = True, completed: int = 0) -> Iterator[_Bar]:
    """``with bar("train", n) as b: b.advance(1, info="loss 2.1")``."""
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TaskProgressColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                        console=Console(stderr=True), transient=False)
    with progress:
        task = progress.add_task(description, total=total, completed=completed, info="")
        yield _Bar(progress, task)
