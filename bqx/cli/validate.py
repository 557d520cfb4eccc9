"""``bqx validate raw|features``: run the data-quality gate and print its results.

Registered on the root app by :func:`register`. A critical failure prints the
results table, then one line naming the suite, the expectation and example rows,
and exits 1.
"""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from bqx.cli.common import console, err_console, load_settings
from bqx.runs import recorded

validate_app = typer.Typer(
    help="Data-quality gate (Great Expectations) on raw bars or feature marts.",
    no_args_is_help=True,
)

_SINCE = typer.Option(
    None,
    "--since",
    help="Validate only rows at or after this UTC time (the new range); warm-up, "
    "window and partner rules read the bars before it that they need.",
)
_DOCS = typer.Option(True, "--docs/--no-docs", help="Build the HTML Data Docs.")


def register(app: typer.Typer) -> None:
    """Add ``bqx validate`` to the root app."""
    app.add_typer(validate_app, name="validate")


def results_table(report) -> Table:
    """A rich table with one row per expectation of a :class:`GateReport`."""
    table = Table(title=f"quality gate: {report.target}", show_lines=False)
    for name in ("suite", "expectation", "severity", "result", "rows", "examples"):
        table.add_column(name, overflow="fold")
    for o in report.outcomes:
        if o.success:
            result = "[green]pass"
        elif o.severity == "critical":
            result = "[red]FAIL"
        else:
            result = "[yellow]warn"
        table.add_row(
            o.suite,
            o.expectation,
            o.severity,
            result,
            str(o.unexpected_count),
            o.error or o.example_text(2),
        )
    return table


def run_validation(target: str, since: Optional[str], docs: bool) -> None:
    """Validate ``target``, print the table (and the Data Docs path); exit 1 on a
    critical failure."""
    from expectations.gate import GateError, build_data_docs, validate

    settings = load_settings()
    try:
        with console.status(f"validating {target} on {settings.warehouse}..."):
            report = validate(settings, target, since=since)
        console.print(results_table(report))
        if report.failures_written:
            console.print(
                f"{report.failures_written} new failing rows in quality.failures"
            )
        if docs:
            console.print(f"Data Docs: {build_data_docs(settings)}")
    except GateError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from None
    if not report.passed:
        err_console.print(f"[red]error:[/] {report.failure_message()}")
        raise typer.Exit(1)
    warned = len(report.warnings)
    console.print(
        f"[green]passed[/]: {len(report.outcomes)} expectations"
        + (f", {warned} warning(s)" if warned else "")
    )


@validate_app.command("raw")
@recorded("validate raw")
def validate_raw(since: Optional[str] = _SINCE, docs: bool = _DOCS) -> None:
    """Validate raw.candles_m1 with the raw_candles suite."""
    run_validation("raw", since, docs)


@validate_app.command("features")
@recorded("validate features")
def validate_features(since: Optional[str] = _SINCE, docs: bool = _DOCS) -> None:
    """Validate every mart of schema marts with its suite."""
    run_validation("features", since, docs)


@validate_app.command("docs")
def validate_docs() -> None:
    """Build the Data Docs (HTML) of the stored results and print their path."""
    from expectations.gate import build_data_docs

    console.print(f"Data Docs: {build_data_docs(load_settings())}")
