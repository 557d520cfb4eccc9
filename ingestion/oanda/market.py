"""The data behind the OANDA fake: M1 mid bars per pair and coarser candles.

A :class:`FakeMarket` holds sorted M1 bars per instrument (from the simulator or
from CSV bar files), derives bid/ask as mid -/+ a per-pair half spread, aggregates
coarser granularities (UTC-aligned for M2..H12; ``D``/``W``/``M`` aligned to
``dailyAlignment`` in ``alignmentTimezone`` and ``weeklyAlignment``), and cuts the
series at the fake's clock: a candle is visible once it has started and complete
once it has ended; the one still forming shows partial values.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from bqx.pairs import UNIVERSE_36, parse_pair

#: Granularities with a fixed length in seconds (aligned on UTC epoch multiples).
FIXED_SECONDS = {
    "M1": 60, "M2": 120, "M4": 240, "M5": 300, "M10": 600, "M15": 900, "M30": 1800,
    "H1": 3600, "H2": 7200, "H3": 10800, "H4": 14400, "H6": 21600, "H8": 28800,
    "H12": 43200,
}  # fmt: skip
CALENDAR = ("D", "W", "M")
SUB_MINUTE = ("S5", "S10", "S15", "S30")
GRANULARITIES = SUB_MINUTE + tuple(FIXED_SECONDS) + CALENDAR
WEEKDAYS = (
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
)


@dataclass(frozen=True)
class Alignment:
    """OANDA's alignment options (only used by ``D``, ``W`` and ``M``)."""

    daily: int = 17
    timezone: str = "America/New_York"
    weekly: str = "Friday"


@dataclass
class Candles:
    """Parallel arrays of candles sorted by start (UNIX seconds)."""

    start: np.ndarray
    end: np.ndarray
    o: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741
    c: np.ndarray
    volume: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


@dataclass
class Visible:
    """The candles visible at a clock time: the first ``n`` of ``series``.

    ``partial`` holds (o, h, l, c, volume) of candle ``n - 1`` when it is still
    forming (``complete: false``), else None.
    """

    series: Candles
    n: int
    partial: tuple[float, float, float, float, int] | None


def default_half_spread(pair: str) -> float:
    """A deterministic per-pair half spread: 0.4-1.5 pips."""
    pip = 0.01 if parse_pair(pair).is_jpy else 0.0001
    return round(pip * (0.4 + (zlib.crc32(pair.encode()) % 12) / 10.0), 6)


class FakeMarket:
    """M1 mid bars per pair, served by :class:`ingestion.oanda.fake.FakeOanda`."""

    def __init__(
        self,
        bars: pd.DataFrame,
        digits: dict[str, int] | None = None,
        half_spread: dict[str, float] | None = None,
    ) -> None:
        """Build from a frame of ``pair, bar_start, open, high, low, close, volume``."""
        self._m1: dict[str, Candles] = {}
        self.digits: dict[str, int] = {}
        self.half_spread: dict[str, float] = {}
        for pair, g in bars.groupby("pair", sort=True):
            pair = parse_pair(pair, UNIVERSE_36).name
            g = g.sort_values("bar_start").drop_duplicates("bar_start", keep="last")
            start = _epoch_seconds(g["bar_start"])
            self._m1[pair] = Candles(
                start=start,
                end=start + 60,
                o=g["open"].to_numpy(float),
                h=g["high"].to_numpy(float),
                l=g["low"].to_numpy(float),
                c=g["close"].to_numpy(float),
                volume=g["volume"].to_numpy("int64"),
            )
            self.digits[pair] = (digits or {}).get(
                pair, 3 if parse_pair(pair).is_jpy else 5
            )
            self.half_spread[pair] = (half_spread or {}).get(
                pair, default_half_spread(pair)
            )
        self._series = lru_cache(maxsize=256)(self._build_series)

    @classmethod
    def from_simulator(
        cls,
        pairs: list[str],
        start: str | pd.Timestamp,
        end: str | pd.Timestamp,
        seed: int = 7,
    ) -> FakeMarket:
        """Market data from :func:`ingestion.simulator.simulate_bars`."""
        from ingestion.simulator import simulate_bars

        return cls(simulate_bars(list(pairs), start, end, seed=seed))

    @classmethod
    def from_csv_dir(
        cls, folder: str | Path, pairs: list[str] | None = None
    ) -> FakeMarket:
        """Market data from ``<PAIR>_<YYYYMM>.csv.gz`` bar files (``time,open,...``).

        Prices keep the number of decimals found in the files.
        """
        frames, digits = [], {}
        for path in sorted(Path(folder).glob("*.csv*")):
            code = path.name.split("_")[0].upper()
            pair = parse_pair(code, UNIVERSE_36).name
            if pairs and pair not in pairs:
                continue
            df = pd.read_csv(path, dtype={"open": str})
            digits[pair] = len(str(df["open"].iloc[0]).partition(".")[2]) or 5
            df["open"] = df["open"].astype(float)
            df["bar_start"] = pd.to_datetime(df.pop("time"), utc=True)
            df["pair"] = pair
            frames.append(df)
        if not frames:
            raise FileNotFoundError(f"no bar files (*.csv, *.csv.gz) in {folder}")
        return cls(pd.concat(frames, ignore_index=True), digits=digits)

    @property
    def pairs(self) -> list[str]:
        """Instruments served, sorted."""
        return sorted(self._m1)

    def m1(self, pair: str) -> Candles:
        """All M1 bars of ``pair``."""
        return self._m1[pair]

    @property
    def last_start(self) -> int:
        """The latest M1 bar start over all pairs (UNIX seconds)."""
        return int(max(s.start[-1] for s in self._m1.values() if len(s)))

    @property
    def first_start(self) -> int:
        """The earliest M1 bar start over all pairs (UNIX seconds)."""
        return int(min(s.start[0] for s in self._m1.values() if len(s)))

    def series(self, pair: str, granularity: str, align: Alignment) -> Candles:
        """Complete candles of ``granularity`` built from all M1 bars (cached)."""
        if granularity == "M1":
            return self._m1[pair]
        if granularity in FIXED_SECONDS:
            align = Alignment()
        return self._series(pair, granularity, align)

    def visible(
        self, pair: str, granularity: str, align: Alignment, now: float
    ) -> Visible:
        """The candles of ``pair`` that have started before ``now`` (UNIX seconds)."""
        series = self.series(pair, granularity, align)
        n = int(np.searchsorted(series.start, now, side="left"))
        if n == 0 or series.end[n - 1] <= now:
            return Visible(series, n, None)
        m1 = self._m1[pair]
        lo = int(np.searchsorted(m1.start, series.start[n - 1], side="left"))
        hi = int(np.searchsorted(m1.start, now, side="left"))
        o, h, low, c, v = _partial_m1(m1, hi - 1, now)
        if hi - 1 > lo:
            h = max(h, float(m1.h[lo : hi - 1].max()))
            low = min(low, float(m1.l[lo : hi - 1].min()))
            v += int(m1.volume[lo : hi - 1].sum())
            o = float(m1.o[lo])
        return Visible(series, n, (o, h, low, c, v))

    def complete_bars(self, now: float | None = None) -> pd.DataFrame:
        """The complete M1 bars (ended by ``now``) of every pair as a frame."""
        frames = []
        for pair, s in self._m1.items():
            keep = s.end <= (np.inf if now is None else now)
            frames.append(
                pd.DataFrame(
                    {
                        "pair": pair,
                        "bar_start": pd.to_datetime(s.start[keep], unit="s", utc=True),
                        "open": s.o[keep], "high": s.h[keep], "low": s.l[keep],
                        "close": s.c[keep], "volume": s.volume[keep],
                    }
                )
            )  # fmt: skip
        return pd.concat(frames, ignore_index=True)

    def _build_series(self, pair: str, granularity: str, align: Alignment) -> Candles:
        m1 = self._m1[pair]
        if granularity in FIXED_SECONDS:
            g = FIXED_SECONDS[granularity]
            keys = m1.start - m1.start % g
            ends = keys + g
        else:
            keys, ends = _calendar_buckets(m1.start, granularity, align)
        if len(keys) == 0:
            return m1
        first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        last = np.r_[first[1:] - 1, len(keys) - 1]
        return Candles(
            start=keys[first],
            end=ends[first],
            o=m1.o[first],
            h=np.maximum.reduceat(m1.h, first),
            l=np.minimum.reduceat(m1.l, first),
            c=m1.c[last],
            volume=np.add.reduceat(m1.volume, first),
        )


def _partial_m1(
    m1: Candles, i: int, now: float
) -> tuple[float, float, float, float, int]:
    """Values of M1 bar ``i`` seen ``now - start`` seconds into the minute."""
    frac = min(max((now - m1.start[i]) / 60.0, 0.0), 1.0)
    o = float(m1.o[i])
    c = o + (float(m1.c[i]) - o) * frac
    h = max(o, c, o + (float(m1.h[i]) - o) * frac)
    low = min(o, c, o + (float(m1.l[i]) - o) * frac)
    return o, h, low, c, max(1, int(m1.volume[i] * frac))


def _epoch_seconds(values: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(values, utc=True).dt.as_unit("ns")
    return ts.astype("int64").to_numpy() // 1_000_000_000


def _calendar_buckets(
    start: np.ndarray, granularity: str, align: Alignment
) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (UNIX seconds) of the D/W/M bucket of each M1 start."""
    local = (
        pd.to_datetime(start, unit="s", utc=True)
        .tz_convert(align.timezone)
        .tz_localize(None)
    )
    hours = pd.Timedelta(hours=align.daily)
    day = (local - hours).normalize()
    if granularity == "D":
        begin, finish = day, day + pd.Timedelta(days=1)
    elif granularity == "W":
        wk = WEEKDAYS.index(align.weekly)
        back = (day.dayofweek - wk) % 7
        begin = day - pd.to_timedelta(back, unit="D")
        finish = begin + pd.Timedelta(days=7)
    else:
        begin = day.to_period("M").to_timestamp()
        finish = begin + pd.offsets.MonthBegin(1)
    return _localized(begin + hours, align.timezone), _localized(
        finish + hours, align.timezone
    )


def _localized(naive: pd.DatetimeIndex, tz: str) -> np.ndarray:
    aware = pd.DatetimeIndex(naive).tz_localize(
        tz, ambiguous=True, nonexistent="shift_forward"
    )
    return aware.tz_convert("UTC").as_unit("ns").asi8 // 1_000_000_000
