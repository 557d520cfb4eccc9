"""Import M1 bar files (``time,open,high,low,close,volume``, gzip or plain).

The format is that of ``../shared/data/fx_m1``: a header line, ISO-8601 UTC bar start
times, decimal prices. The pair comes from a ``pair``/``instrument`` column when the
file has one, else from ``--pair``, else from the file name (``EURUSD_202401.csv.gz``).

Every row is either loaded or quarantined in ``raw.candles_rejected`` with its reason
(bad OHLC order, non-positive or non-numeric price, too many decimals, bad volume,
time not on a minute, unparseable time, duplicate in file, unknown pair): nothing is
dropped silently, and importing a file twice changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bqx.pairs import UNIVERSE_36, UnknownPairError, parse_pair
from bqx.warehouse import LoadResult, Warehouse

REQUIRED = ("time", "open", "high", "low", "close", "volume")
PRICES = ("open", "high", "low", "close")
_DECIMAL = re.compile(r"^[+-]?\d+(\.\d+)?$")
_FILE_PAIR = re.compile(r"^([A-Za-z]{3})_?([A-Za-z]{3})(?:[_.-]|$)")
PRICE_KINDS = {"mid": "M", "bid": "B", "ask": "A"}


class CsvFormatError(ValueError):
    """A file that cannot be read as bars at all (names the file)."""


@dataclass
class FileReport:
    """What happened to one file."""

    path: Path
    rows: int
    loaded: LoadResult
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def pair_from_filename(path: Path) -> str | None:
    """``EURUSD_202401.csv.gz`` -> ``EUR_USD`` (not validated)."""
    match = _FILE_PAIR.match(path.name)
    return f"{match.group(1)}_{match.group(2)}".upper() if match else None


def read_bar_file(
    path: Path, pair: str | None = None, universe=UNIVERSE_36
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse and validate one file.

    Returns:
        ``(bars, rejects)``: bars with columns pair, bar_start, open..close (decimal
        strings), volume; rejects with source, record_ref, pair, raw_record, reason.

    Raises:
        CsvFormatError: unreadable file or missing columns.
    """
    try:
        # Arrow-backed strings: the string checks below run in pyarrow, not Python
        raw = pd.read_csv(
            path, dtype="string[pyarrow]", keep_default_na=False, compression="infer"
        )
    except (OSError, ValueError, EOFError) as exc:
        raise CsvFormatError(f"{path}: cannot read as CSV: {exc}") from exc
    raw.columns = [c.strip().lower() for c in raw.columns]
    missing = [c for c in REQUIRED if c not in raw.columns]
    if missing:
        raise CsvFormatError(
            f"{path}: missing column(s) {', '.join(missing)}; expected header "
            f"{','.join(REQUIRED)}"
        )
    text = raw.apply(lambda col: col.str.strip())
    reason = pd.Series("", index=text.index, dtype=object)

    def reject(mask: pd.Series | np.ndarray, why: str | pd.Series) -> None:
        mask = pd.Series(mask, index=text.index) & (reason == "")
        reason[mask] = why if isinstance(why, str) else why[mask]

    pairs = _pairs_column(text, path, pair, universe, reject)
    times = pd.to_datetime(text["time"], utc=True, errors="coerce", format="ISO8601")
    reject(times.isna(), "unparseable time")
    off_minute = times.notna() & (
        (times.dt.second != 0) | (times.dt.microsecond != 0) | (times.dt.nanosecond != 0)
    )
    reject(off_minute, "time not on a minute")

    values = {}
    for col in PRICES:
        s = text[col]
        numeric = s.str.match(_DECIMAL)
        reject(~numeric, f"non-numeric price in {col}")
        values[col] = pd.to_numeric(s.where(numeric), errors="coerce").astype(float)
        reject(values[col] <= 0, f"non-positive price in {col}")
        reject(numeric & s.str.contains(r"\.\d{7,}$"), f"more than 6 decimals in {col}")
    o, h, lo, c = (values[k] for k in PRICES)
    bad_order = (lo > np.minimum(o, c)) | (h < np.maximum(o, c)) | (lo > h)
    reject(bad_order, "bad OHLC order (need low <= open, close <= high)")
    volume = pd.to_numeric(
        text["volume"].where(text["volume"].str.isdigit()), errors="coerce"
    ).astype(float)
    reject(volume.isna(), "bad volume (need a whole number >= 0)")

    lines = text.index.to_series() + 2  # header is line 1
    ok = reason == ""
    dup = ok & pd.DataFrame({"p": pairs, "t": times}).duplicated(keep="first")
    first_line = (
        pd.DataFrame({"p": pairs, "t": times, "line": lines})[ok]
        .groupby(["p", "t"])["line"]
        .transform("min")
    )
    first = first_line.reindex(text.index).astype("Int64").astype(str)
    reject(dup, "duplicate in file (same pair and time as line " + first + ")")

    ok = reason == ""
    bars = pd.DataFrame(
        {
            "pair": pairs[ok],
            "bar_start": times[ok],
            **{col: text.loc[ok, col] for col in PRICES},
            "volume": volume[ok].astype("int64"),
        }
    )
    bad = ~ok
    rejects = pd.DataFrame(
        {
            "source": "csv",
            "record_ref": path.name + ":" + lines[bad].astype(str),
            "pair": pairs[bad],
            "raw_record": _joined(raw.loc[bad]),
            "reason": reason[bad],
        }
    )
    return bars.reset_index(drop=True), rejects.reset_index(drop=True)


def _joined(rows: pd.DataFrame) -> pd.Series:
    """The original text of each row, fields joined by commas."""
    if rows.empty:
        return pd.Series(dtype=object)
    return rows.astype(str).agg(",".join, axis=1)


def _pairs_column(text, path, pair, universe, reject) -> pd.Series:
    """The pair of each row; rows whose pair is not in the universe are rejected."""
    col = next((c for c in ("pair", "instrument") if c in text.columns), None)
    if col is not None:
        names = text[col]
    else:
        name = pair or pair_from_filename(path)
        if name is None:
            raise CsvFormatError(
                f"{path}: no pair column and no pair in the file name; pass --pair"
            )
        names = pd.Series(name, index=text.index)
    canonical = {}
    for value in names.unique():
        try:
            canonical[value] = parse_pair(value, universe).name
        except UnknownPairError:
            canonical[value] = None
    out = names.map(canonical)
    reject(out.isna(), "unknown pair " + names.map(repr))
    return out.fillna(names)


def import_files(
    warehouse: Warehouse,
    files: list[Path],
    pair: str | None = None,
    price: str = "mid",
    universe=UNIVERSE_36,
    on_file=None,
) -> list[FileReport]:
    """Load bar files into ``raw.candles_m1``; rejected rows go to quarantine.

    Args:
        warehouse: an open warehouse (schema ensured here).
        files: the files, loaded one transaction each.
        pair: the pair of every file (default: from a column or the file name).
        price: what the prices are, ``mid``, ``bid`` or ``ask`` (kept in ``source``).
        universe: the pairs accepted.
        on_file: callback ``(FileReport)`` after each file (progress).
    """
    if price not in PRICE_KINDS:
        raise ValueError(f"unknown price kind {price!r}: use mid, bid or ask")
    for path in files:
        if not Path(path).is_file():
            raise CsvFormatError(f"{path}: no such file")
    warehouse.ensure_schema()
    reports = []
    for path in map(Path, files):
        bars, rejects = read_bar_file(path, pair, universe)
        warehouse.quarantine(rejects)
        loaded = warehouse.upsert_candles(bars, source=f"csv:{PRICE_KINDS[price]}")
        report = FileReport(
            path, len(bars) + len(rejects), loaded, rejects["reason"].value_counts().to_dict()
        )
        reports.append(report)
        if on_file:
            on_file(report)
    return reports
