"""Pre-training tasks (registered ``tasks``): each owns its input transform, labels, head, loss and metric."""

from kaleido.tasks.base import Sample, Task, TaskHead

__all__ = ["Sample", "Task", "TaskHead"]
