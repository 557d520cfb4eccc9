"""Operations commands: ``bqx doctor`` and ``bqx runs``."""

from __future__ import annotations

import typer

from bqx.cli.common import BqxError, console, load_settings
from bqx.settings import Settings


def _settings() -> Settings:
    """The settings with ``aws-sm://`` secrets resolved (one-line error otherwise)."""
    from bqx.secrets import SecretError, resolved

    try:
        return resolved(load_settings())
    except SecretError as exc:
        raise BqxError(str(exc)) from None


def doctor_command(
    init: bool = typer.Option(
        False, "--init", help="Create or upgrade the warehouse schemas first."
    ),
) -> None:
    """Check every configured component; exit 1 if a required one fails."""
    from bqx.doctor import failed, run_checks, table
    from bqx.secrets import install_log_masking

    settings = _settings()
    install_log_masking(settings)
    checks = run_checks(settings, init=init)
    console.print(table(checks))
    bad = failed(checks)
    if bad:
        names = ", ".join(c.component for c in bad)
        raise BqxError(f"doctor: {len(bad)} required check(s) failed: {names}")
    where = settings.deployment
    console.print(f"[green]doctor: all required checks passed[/] ({where})")


def runs_command(
    last: int = typer.Option(20, "--last", "-n", min=1, help="How many runs to show."),
) -> None:
    """Show the run history (ops.runs), newest first."""
    from rich.table import Table

    from bqx.runs import list_runs

    settings = _settings()
    frame = list_runs(settings, last=last)
    if frame.empty:
        console.print("no runs recorded yet")
        return
    out = Table(
        "run", "command", "status", "stage", "started (UTC)", "seconds",
        "rows in", "rows out", "args", "error", title=f"last {len(frame)} runs",
    )  # fmt: skip
    for row in frame.itertuples(index=False):
        seconds = (
            "-"
            if _missing(row.ended_at)
            else f"{(row.ended_at - row.started_at).total_seconds():.1f}"
        )
        style = {"ok": "green", "failed": "red"}.get(row.status, "yellow")
        out.add_row(
            row.run_id[:8],
            row.command,
            f"[{style}]{row.status}[/]",
            "-" if _missing(row.stage) else row.stage,
            row.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            seconds,
            _count(row.rows_in),
            _count(row.rows_out),
            row.args,
            "" if _missing(row.error) else row.error,
        )
    console.print(out)


def _missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _count(value) -> str:
    return "-" if _missing(value) else str(int(value))


def register(app: typer.Typer) -> None:
    """Add ``doctor`` and ``runs`` to the root ``bqx`` app."""
    app.command("doctor")(doctor_command)
    app.command("runs")(runs_command)
