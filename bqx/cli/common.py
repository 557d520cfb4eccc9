"""What every command shares: the console, settings loading, error handling."""

from __future__ import annotations

import sys as _sys
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

# Wide output when piped (logs, CI): tables of features do not fit 80 columns.
console = Console(highlight=False, width=None if _sys.stdout.isatty() else 200)
err_console = Console(
    stderr=True, highlight=False, width=None if _sys.stderr.isatty() else 200
)


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


SUMMARY_COLUMNS = (
    "bqx_45", "ret_std_45", "vwap_dev_45", "reg_slope_45", "corr_base_base_60",
    "csi_spread_60", "tri_err_mean", "minutes_since_open",
)  # fmt: skip


def frame_table(frame, columns=None, title: str | None = None, limit: int = 40):
    """A rich table of the first rows of a frame (selected columns)."""
    from rich.table import Table

    cols = [c for c in (columns or frame.columns) if c in frame.columns]
    table = Table(*cols, title=title)
    for _, row in frame.head(limit).iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float):
                cells.append("-" if v != v else f"{v:.6g}")
            elif hasattr(v, "strftime"):
                cells.append(v.strftime("%Y-%m-%d %H:%M"))
            else:
                cells.append(str(v))
        table.add_row(*cells)
    return table


def pairs_option(value: str | None) -> str | None:
    """Option callback: refuse a pair outside the universe before the command runs.

    ``all`` (or nothing) passes through; otherwise the canonical comma list.
    """
    from bqx.pairs import resolve_pairs

    if value is None or value == "all":
        return value
    return ",".join(resolve_pairs(value.split(",")))


def chosen_pairs(value: str | None, settings: Settings) -> list[str]:
    """The pairs an option names (``all``: the configured universe)."""
    return settings.pair_list if value in (None, "all") else value.split(",")
