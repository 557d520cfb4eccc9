"""Foundation figures: simulator speed, CSV import speed, momentum build time."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import figure, scratch_pg_database, scratch_settings, timer  # noqa: E402

from bqx.pairs import UNIVERSE_28  # noqa: E402
from bqx.warehouse import open_warehouse  # noqa: E402
from ingestion.csv_import import import_files  # noqa: E402
from ingestion.simulator import simulate_bars  # noqa: E402


def main() -> None:
    with timer() as t:
        bars = simulate_bars(UNIVERSE_28, "2024-01-01", "2024-02-01", seed=1)
    figure("simulator", len(bars) / t(), "bars/s", f"28 pairs x 1 month, {len(bars):,} bars")

    # CSV files in the fx_m1 format, one per pair
    tmp = scratch_settings().data_dir / "csv"
    tmp.mkdir(parents=True)
    files = []
    for pair, g in bars.groupby("pair"):
        path = tmp / f"{pair.replace('_', '')}_202401.csv.gz"
        lines = ["time,open,high,low,close,volume"] + [
            f"{ts:%Y-%m-%dT%H:%M:%SZ},{o:.5f},{h:.5f},{lo:.5f},{c:.5f},{v}"
            for ts, o, h, lo, c, v in zip(
                g.bar_start, g.open, g.high, g.low, g.close, g.volume
            )
        ]
        path.write_bytes(gzip.compress("\n".join(lines).encode()))
        files.append(path)
    n = len(bars)

    duck = scratch_settings(pairs=",".join(UNIVERSE_28))
    with open_warehouse(duck) as wh, timer() as t:
        import_files(wh, files)
    figure("csv import duckdb", n / t(), "bars/s", f"{len(files)} gzip files, {n:,} bars")

    with scratch_pg_database() as db:
        pg = scratch_settings(warehouse="postgres", pg_database=db)
        with open_warehouse(pg) as wh, timer() as t:
            import_files(wh, files)
        figure("csv import postgres", n / t(), "bars/s", f"{n:,} bars, COPY + upsert")
        with open_warehouse(pg) as wh, timer() as t:
            import_files(wh, files)
        figure("csv re-import postgres (no-op)", n / t(), "bars/s", "idempotent reload")

    from bqx.features import build

    with timer() as t:
        build(duck, select="+features_bqx")
    figure("momentum build duckdb", t(), "s", "dbt build +features_bqx, 28 pairs x 1 month")


if __name__ == "__main__":
    main()
