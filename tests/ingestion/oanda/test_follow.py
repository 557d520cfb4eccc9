"""``follow`` against the fake: appends completed candles, keeps raw.candles_m5
current, never stores a forming candle, stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pandas as pd

from bqx.warehouse import open_warehouse
from ingestion.backfill import backfill
from ingestion.follow import follow
from ingestion.oanda.market import Alignment
from ingestion.oanda.timefmt import to_ns

PAIRS = ["EUR_USD", "USD_JPY", "GBP_USD"]
T0 = to_ns("2024-01-04 10:00:30") / 1e9
FROM = pd.Timestamp("2024-01-04 09:00", tz="UTC")


def m5_rows(settings) -> dict:
    with open_warehouse(settings) as wh:
        df = wh.query_df(
            "select pair, bar_start, cast(open as varchar) o, cast(high as varchar) h, "
            "cast(low as varchar) l, cast(close as varchar) c, volume, complete "
            "from raw.candles_m5"
        )
    return {
        (r.pair, pd.Timestamp(r.bar_start).tz_convert("UTC")): (
            Decimal(r.o),
            Decimal(r.h),
            Decimal(r.l),
            Decimal(r.c),
            int(r.volume),
            bool(r.complete),
        )
        for r in df.itertuples(index=False)
    }


def test_follow_appends_completed_candles_and_m5(
    any_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(any_settings, fake)
    fake.clock.set(T0)
    backfill(settings, PAIRS, FROM)
    seen, forming = [], []

    def on_poll(result):
        seen.append(fake.clock.now())
        forming.append(result.forming)
        fake.clock.advance(70)  # a bit more than a minute between polls

    stats = follow(settings, PAIRS, interval=0, max_polls=8, on_poll=on_poll)
    assert stats.polls == 8 and stats.bars >= 3 * 6
    assert sum(len(f) for f in forming) >= 3 * 7  # forming candles seen, not stored
    fake.clock.set(seen[-1])
    expected = [b for b in expected_bars(fake) if b[1] >= FROM]
    assert stored_bars(settings) == expected
    # forming candles of the last poll are not stored
    last_forming = {
        (p, pd.Timestamp(to_ns(t), unit="ns", tz="UTC")) for p, t in forming[-1].items()
    }
    assert not last_forming & {(b[0], b[1]) for b in stored_bars(settings)}
    # raw.candles_m5 equals the fake's own M5 candles for every complete bucket
    m5 = m5_rows(settings)
    complete = {k: v for k, v in m5.items() if v[5]}
    assert len(complete) >= 3 * 12  # 09:00 to ~10:09
    for pair in PAIRS:
        s = fake.market.series(pair, "M5", Alignment())
        d = fake.market.digits[pair]
        for i in range(len(s)):
            key = (pair, pd.Timestamp(int(s.start[i]), unit="s", tz="UTC"))
            if key in complete:
                want = tuple(
                    Decimal(f"{x:.{d}f}") for x in (s.o[i], s.h[i], s.l[i], s.c[i])
                )
                assert complete[key][:5] == (*want, int(s.volume[i])), key


def test_follow_starts_without_watermark_from_lookback(duck_settings, fake, aim):
    settings = aim(duck_settings, fake)
    stats = follow(settings, ["EUR_USD"], interval=0, max_polls=1, lookback=30)
    assert stats.bars == 29  # the 30 latest candles, the forming one left out


def test_follow_stops_cleanly_on_sigterm(duck_settings, fake, aim):
    """(SIGINT takes the same handler; the backfill CLI test sends SIGINT.)"""
    sig = signal.SIGTERM
    settings = aim(duck_settings, fake)
    fake.clock.set(T0, speed=120.0)
    env = {**os.environ, **settings.as_env()}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bqx.cli.main",
            "ingest",
            "follow",
            "--pairs",
            ",".join(PAIRS),
            "--interval",
            "0.2",
            "--lookback",
            "60",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while fake.requests < 3 * 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped after" in out
    with open_warehouse(settings) as wh:
        ahead = wh.query_df(
            "select count(*) as n from raw.candles_m1 c join raw.ingest_watermarks w "
            "using (pair) where c.bar_start > w.last_bar_start"
        )
        bars = wh.query_df(
            "select pair, count(*) as n from raw.candles_m1 group by pair"
        )
        m5 = wh.query_df("select sum(bars) as n from raw.candles_m5")
    assert int(ahead["n"][0]) == 0
    assert set(bars["pair"]) == set(PAIRS)
    assert int(m5["n"][0]) == int(bars["n"].sum())  # every M1 bar is in a 5-min bar


def test_follow_stream_fetches_as_each_minute_starts(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    """With --stream, new candles arrive on the pricing stream's cue: the fallback
    poll interval (60 s) is never reached, yet every new minute is stored."""
    import threading

    settings = aim(duck_settings, fake)
    fake.clock.set(T0, speed=60.0)  # a fake minute per second
    backfill(settings, PAIRS, FROM)
    stop = threading.Event()
    guard = threading.Timer(40, stop.set)
    guard.start()
    polls = []

    def on_poll(result):
        polls.append(result)
        if sum(len(v) for r in polls[1:] for v in r.new_bars.values()) >= 3 * 3:
            stop.set()

    began = time.time()
    stats = follow(settings, PAIRS, interval=60, stop=stop, stream=True,
                   on_poll=on_poll)  # fmt: skip
    guard.cancel()
    assert time.time() - began < 30 and stats.polls >= 3
    assert sum(len(v) for r in polls[1:] for v in r.new_bars.values()) >= 9
    for r in polls[1:]:  # each stream-cued poll found its candle complete
        for times in r.new_bars.values():
            for t in times:
                done = fake.clock.wall_time_of(t.value / 1e9 + 60)
                assert r.committed_at - done < 5.0
    stored = stored_bars(settings)
    last = max(b[1] for b in stored)
    fake.clock.set(fake.clock.now())
    assert stored == [b for b in expected_bars(fake) if FROM <= b[1] <= last]
