"""What every command shares: the console, settings loading, error handling."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bqx.settings import Settings, get_settings

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class BqxError(Exception):
    """A problem with the user's input or environment: one line, exit code 1."""


def load_settings() -> Settings:
    """The settings, with a one-line error for a bad ``BQX_*`` value."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(x) for x in first["loc"]) or "settings"
        raise BqxError(
            f"bad setting BQX_{field.upper()}: {first['msg']}"
        ) from None


def progress() -> Progress:
    """A rich progress bar with counts, rate and ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a pipeline step and how long it took."""
    import time

    console.rule(f"[bold cyan]{title}")
    t0 = time.perf_counter()
    yield
    console.print(f"[green]done[/] in {time.perf_counter() - t0:.1f} s")
