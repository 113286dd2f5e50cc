"""A rich progress column showing images per second (rich has none built in)."""

from __future__ import annotations

from rich.progress import ProgressColumn, Task
from rich.text import Text


class SpeedColumn(ProgressColumn):
    """``12.3 img/s`` from rich's own speed estimate; before it has two samples (a split of one
    batch), the images done since the task started over its elapsed time. A task's ``resumed``
    field (rows an earlier run did) is not counted as done here."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.elapsed:
            done = task.completed - task.fields.get("resumed", 0)
            speed = done / task.elapsed if done > 0 else None
        return Text("-- img/s" if speed is None else f"{speed:.1f} img/s", style="progress.data.speed")
