"""Rich progress bars for the backfill: one per pair (bars, pages, rate, ETA)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)


class RichProgress:
    """A :class:`ingestion.backfill.ProgressSink` drawing one rich bar per pair."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("bars {task.fields[pages]:>4} pages"),
            TextColumn("{task.fields[rate]:>8.0f} bars/s"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._pages: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, pair: str, total: int) -> None:
        self._tasks[pair] = self.progress.add_task(pair, total=total, pages=0, rate=0.0)
        self._pages[pair] = 0

    def advance(self, pair: str, bars: int, pages: int) -> None:
        task = self._tasks[pair]
        self._pages[pair] += pages
        self.progress.update(task, advance=bars, pages=self._pages[pair])
        speed = self.progress.tasks[task].speed or 0.0
        self.progress.update(task, rate=speed)

    def finish(self, pair: str, ok: bool) -> None:
        task = self._tasks[pair]
        done = self.progress.tasks[task].completed
        self.progress.update(
            task,
            total=max(done, 1),
            completed=max(done, 1),
            description=pair if ok else f"[red]{pair}",
        )
