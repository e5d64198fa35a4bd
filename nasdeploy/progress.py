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


def advance(bar, task, n: int = 1, **fields) -> None:
    """Advance ``task`` of ``bar`` (nothing when ``bar`` is None) by ``n``, growing its total where more steps come
    than were planned (extra rounds for what is undecided), so its count never reads past its total."""
    if bar is None:
        return
    t = next(t for t in bar.tasks if t.id == task)
    if t.total is not None and t.completed + n > t.total:
        bar.update(task, total=t.completed + n)
    bar.update(task, advance=n, **fields)
