"""A rich progress bar for template builds, for the CLI and the server's first start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .spec import Progress as ProgressFn


@contextmanager
def progress_bar(title: str, console: Console | None = None) -> Iterator[ProgressFn]:
    """Yields a `progress(done, total, message)` callback drawing one bar on stderr (stdout may be
    data), removed when the block ends."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TaskProgressColumn(),
               TimeElapsedColumn(), TextColumn("[dim]{task.fields[step]}"))
    with Progress(*columns, console=console or Console(stderr=True), transient=True) as bar:
        task = bar.add_task(title, total=None, step="")

        def report(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total, step=message)

        yield report
