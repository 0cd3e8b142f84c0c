"""Progress of template builds: a rich bar for terminals (CLI, first start), log lines for servers."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

from .._exceptions import SandlotError
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


def logged_progress(title: str, logger: logging.Logger, every: float = 5.0, step: int = 10) -> ProgressFn:
    """A `progress(done, total, message)` callback for builds a running server starts itself: a log
    line at the first report, when the step changes after `step` percent more or `every` seconds,
    and within one step every `every` seconds (a debootstrap reports ~700 steps: ~15 lines)."""
    last = {"message": None, "at": 0.0, "share": -step}

    def report(done: int, total: int, message: str) -> None:
        now = time.monotonic()
        share = 100 * done // total if total else None
        moved = share is not None and share - last["share"] >= step
        due = now - last["at"] >= every
        if last["message"] is not None and not (due or (moved and message != last["message"])):
            return
        last.update(message=message, at=now, share=share if share is not None else last["share"])
        logger.info("building template %s:%s %s", title, f" {share}%" if share is not None else "", message)

    return report


def build_in_view(store, name: str, console: Console | None = None) -> None:
    """Build `name` now with a bar, if it is missing or stale and this process may build it (root):
    a first start shows its one slow step instead of spending it silently on the first create."""
    if os.geteuid() != 0 or store.is_built(name):
        return
    console = console or Console(stderr=True)
    try:
        if console.is_terminal:
            with progress_bar(f"template {name} (first use, then cached)", console=console) as progress:
                store.build(name, progress=progress)
        else:  # a log file: lines, not a bar
            store.build(name, progress=logged_progress(name, logging.getLogger("sandlot.templates")))
    except SandlotError as e:
        console.print(f"[yellow]warning:[/] template {name} could not be built: {e.message}")
