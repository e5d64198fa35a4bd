"""One rich progress bar for every long job (None when disabled)."""
from __future__ import annotations


def progress_bar(enabled: bool, *fields: str, elapsed: bool = False):
    """A rich Progress with description, bar, count, ``fields`` (task field names shown as text) and time."""
    if not enabled:
        return None
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    cols = [TextColumn(f) for f in fields]
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *cols,
                    TimeElapsedColumn() if elapsed else TimeRemainingColumn())
