"""A rich progress column showing images per second (rich has none built in)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text


class SpeedColumn(ProgressColumn):
    """``12.3 img/s`` from rich's own speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- img/s" if speed is None else f"{speed:.1f} img/s", style="progress.data.speed")
