"""``bqx ingest``: load bars into the warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from bqx.cli.common import chosen_pairs, console, load_settings, pairs_option, progress
from bqx.runs import current_run, recorded

ingest_app = typer.Typer(
    help="Load M1 bars into the warehouse (raw.candles_m1): CSV files, the "
    "simulator, or OANDA (backfill, follow, gaps).",
    no_args_is_help=True,
)


@ingest_app.command("csv")
@recorded("ingest csv")
def ingest_csv(
    files: List[Path] = typer.Argument(
        ..., help="Bar files: time,open,high,low,close,volume (gzip or plain)."
    ),
    pair: Optional[str] = typer.Option(
        None,
        help="Pair of every file (default: a pair column or the file name).",
        callback=pairs_option,
    ),
    price: str = typer.Option(
        "mid", help="What the prices are: mid, bid or ask (kept in `source`)."
    ),
) -> None:
    """Import bar files; malformed rows go to raw.candles_rejected with a reason.

    Re-importing a file changes nothing. Example:
    `bqx ingest csv ../shared/data/fx_m1/*.csv.gz --price bid`
    """
    from bqx.warehouse import open_warehouse
    from ingestion.csv_import import import_files

    settings = load_settings()
    current_run().stage("import")
    table = Table("file", "rows", "inserted", "updated", "unchanged", "rejected")
    reasons: dict[str, int] = {}
    with open_warehouse(settings) as wh, progress() as bar:
        task = bar.add_task("files", total=len(files))

        def on_file(report) -> None:
            r = report.loaded
            table.add_row(
                report.path.name, str(report.rows), str(r.inserted),
                str(r.updated), str(r.unchanged), str(report.rejected_total),
            )  # fmt: skip
            for why, n in report.rejected.items():
                reasons[why] = reasons.get(why, 0) + n
            current_run().add_rows(report.rows, r.inserted + r.updated)
            bar.advance(task)

        import_files(wh, files, pair=pair, price=price, on_file=on_file)
    console.print(table)
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        console.print(f"  rejected {n:>7}  {why}")


@ingest_app.command("simulate")
@recorded("ingest simulate")
def ingest_simulate(
    pairs: str = typer.Option(
        "all",
        help="Comma-separated pairs, or `all` for the configured universe.",
        callback=pairs_option,
    ),
    days: int = typer.Option(14, help="Calendar days of bars, ending --end."),
    end: Optional[str] = typer.Option(
        None, help="End of the range (UTC, exclusive); default: now."
    ),
    seed: int = typer.Option(7, help="Random seed: same arguments, same bars."),
) -> None:
    """Generate realistic M1 bars with the market simulator and load them."""
    import pandas as pd

    from bqx.timeutil import utc, utc_now_minute

    settings = load_settings()
    names = chosen_pairs(pairs, settings)
    stop = utc(end) if end else utc_now_minute()
    start = stop - pd.Timedelta(days=days)
    current_run().stage("simulate and load")
    bars, total = simulate_and_load(settings, names, start, stop, seed)
    current_run().rows(len(bars), total.inserted + total.updated)
    console.print(
        f"{len(names)} pairs, {start:%Y-%m-%d %H:%M} to {stop:%Y-%m-%d %H:%M} UTC: "
        f"{total.inserted} inserted, {total.updated} updated, "
        f"{total.unchanged} unchanged"
    )


def simulate_and_load(settings, names, start, stop, seed: int = 7):
    """Simulate bars of ``names`` in ``[start, stop)`` and load them, pair by pair.

    Returns:
        ``(bars, LoadResult)``.
    """
    from bqx.warehouse import LoadResult, open_warehouse
    from ingestion.simulator import simulate_bars

    bars = simulate_bars(names, start, stop, seed=seed)
    total = LoadResult(0, 0, 0)
    with open_warehouse(settings) as wh, progress() as bar:
        wh.ensure_schema()
        task = bar.add_task("simulate + load", total=len(names))
        for _, frame in bars.groupby("pair", sort=True):
            total += wh.upsert_candles(frame, source="simulator:M")
            bar.advance(task)
    return bars, total
