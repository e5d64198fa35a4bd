"""The progress bar of every long job (nasdeploy/progress.py): none when disabled; the fields a job asks for shown
as columns; elapsed or remaining time."""
from __future__ import annotations

from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nasdeploy.progress import progress_bar


def test_no_bar_when_disabled():
    assert progress_bar(False, "loss {task.fields[loss]}") is None


def test_the_fields_asked_for_are_columns_and_render():
    bar = progress_bar(True, "loss {task.fields[loss]}", "{task.fields[ips]} img/s")
    texts = [c.text_format for c in bar.columns if isinstance(c, TextColumn)]
    assert texts == ["{task.description}", "loss {task.fields[loss]}", "{task.fields[ips]} img/s"]
    assert isinstance(bar.columns[-1], TimeRemainingColumn)
    task = bar.add_task("supernet", total=4, loss="2.301", ips="1,200")
    bar.update(task, completed=2)
    assert [c.render(bar.tasks[0]).plain for c in bar.columns if isinstance(c, TextColumn)] == \
        ["supernet", "loss 2.301", "1,200 img/s"]
    assert isinstance(progress_bar(True, elapsed=True).columns[-1], TimeElapsedColumn)
