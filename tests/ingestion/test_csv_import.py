import gzip
import subprocess
import sys
from pathlib import Path

import pytest

from bqx.warehouse import open_warehouse
from ingestion.csv_import import CsvFormatError, import_files, read_bar_file

GOOD = [
    "2024-01-02T10:00:00Z,1.104270,1.104290,1.104250,1.104280,0",
    "2024-01-02T10:01:00Z,1.104280,1.104300,1.104200,1.104210,3",
]
BAD = {
    "bad OHLC order": "2024-01-02T10:02:00Z,1.1,1.0,1.2,1.15,5",
    "non-numeric price in open": "2024-01-02T10:03:00Z,abc,1.2,1.0,1.15,5",
    "non-positive price in low": "2024-01-02T10:04:00Z,1.1,1.2,0,1.15,5",
    "time not on a minute": "2024-01-02T10:05:30Z,1.1,1.2,1.0,1.15,5",
    "unparseable time": "yesterday,1.1,1.2,1.0,1.15,5",
    "duplicate in file": "2024-01-02T10:00:00Z,1.104270,1.104290,1.104250,1.104280,0",
    "more than 6 decimals in close": "2024-01-02T10:06:00Z,1.1,1.2,1.0,1.1500001,5",
    "bad volume": "2024-01-02T10:07:00Z,1.1,1.2,1.0,1.15,-4",
}
HEADER = "time,open,high,low,close,volume"


def write(path: Path, lines, gz=False) -> Path:
    text = "\n".join([HEADER, *lines]) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_every_rejection_reason_is_named(tmp_path):
    path = write(tmp_path / "EURUSD_202401.csv", GOOD + list(BAD.values()))
    bars, rejects = read_bar_file(path)
    assert len(bars) == 2 and set(bars["pair"]) == {"EUR_USD"}
    assert len(rejects) == len(BAD)
    for (expected, raw), (_, row) in zip(BAD.items(), rejects.iterrows()):
        assert row["reason"].startswith(expected), (expected, row["reason"])
        assert row["raw_record"] == raw
    # line numbers count the header as line 1
    assert rejects["record_ref"].iloc[0] == "EURUSD_202401.csv:4"
    assert "line 2" in rejects.loc[rejects["reason"].str.startswith("dup"), "reason"].iloc[0]


def test_unknown_pair_rows_are_quarantined(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        "time,open,high,low,close,volume,pair\n"
        + GOOD[0] + ",EUR_USD\n" + GOOD[0] + ",XAU_USD\n" + GOOD[1] + ",USD_EUR\n"
    )  # fmt: skip
    bars, rejects = read_bar_file(path)
    assert bars["pair"].tolist() == ["EUR_USD"]
    assert rejects["reason"].tolist() == ["unknown pair 'XAU_USD'", "unknown pair 'USD_EUR'"]


def test_missing_columns_is_a_clear_file_error(tmp_path):
    path = tmp_path / "EURUSD.csv"
    path.write_text("time,open,close\n2024-01-02T10:00:00Z,1,1\n")
    with pytest.raises(CsvFormatError, match="missing column.*high"):
        read_bar_file(path)


def test_import_then_reimport_on_both_warehouses(any_settings, tmp_path):
    path = write(tmp_path / "EURUSD_202401.csv.gz", GOOD + list(BAD.values()), gz=True)
    with open_warehouse(any_settings) as wh:
        (first,) = import_files(wh, [path], price="bid")
        assert first.loaded.inserted == 2 and first.rejected_total == len(BAD)
        (second,) = import_files(wh, [path], price="bid")
        assert second.loaded.inserted == 0 and second.loaded.unchanged == 2
        assert wh.count_candles() == 2
        n_rej = wh.query_df("select count(*) as n from raw.candles_rejected")["n"][0]
        assert n_rej == len(BAD)
        assert set(wh.query_df("select source from raw.candles_m1")["source"]) == {"csv:B"}


def test_real_january_bars(real_bars_dir, duck_settings):
    if real_bars_dir is None:
        pytest.skip("../shared/data/fx_m1 is not present")
    files = sorted(real_bars_dir.glob("*.csv.gz"))
    with open_warehouse(duck_settings) as wh:
        reports = import_files(wh, files, price="bid")
        counts = wh.query_df(
            "select pair, count(*) as n from raw.candles_m1 group by pair order by pair"
        ).set_index("pair")["n"]
    assert sum(r.rejected_total for r in reports) == 0
    # row counts of ../shared/data/fx_m1/README.md
    assert counts["EUR_USD"] == 31402 and counts["USD_JPY"] == 31747
    assert counts.sum() == 31402 + 31637 + 31747 + 31609 + 31621 + 31614 + 31685


def test_cli_refuses_an_unknown_pair_in_one_line(tmp_path, duck_settings):
    path = write(tmp_path / "bars.csv", GOOD)
    env = {**duck_settings.as_env(), "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "bqx.cli.main", "ingest", "csv", str(path), "--pair", "EUR_XYZ"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "unknown pair 'EUR_XYZ'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not duck_settings.duckdb_path.exists()  # refused before any SQL
