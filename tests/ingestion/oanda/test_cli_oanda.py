"""The CLI commands: one-line errors with exit code 1, summaries, the fake server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import requests

from bqx.cli.main import main
from bqx.settings import get_settings


@pytest.fixture
def cli(duck_settings, fake, aim, monkeypatch, capsys):
    """``cli(*args)`` runs the real ``bqx`` entry point aimed at the fake."""
    for key, value in aim(duck_settings, fake).as_env().items():
        monkeypatch.setenv(key, value)

    def invoke(*args):
        get_settings.cache_clear()
        capsys.readouterr()
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code or 0
        finally:
            get_settings.cache_clear()
        out, err = capsys.readouterr()
        return SimpleNamespace(exit_code=code, output=out, stderr=err)

    return invoke


def test_backfill_prints_summary(cli, fake):
    result = cli(
        "ingest",
        "backfill",
        "--pairs",
        "EUR_USD",
        "--since",
        "2024-01-04",
        "--until",
        "2024-01-04 12:00",
    )
    assert result.exit_code == 0, result.output
    bars = fake.market.complete_bars()
    n = int(
        (
            (bars["pair"] == "EUR_USD")
            & (bars["bar_start"] < pd.Timestamp("2024-01-04 12:00", tz="UTC"))
        ).sum()
    )
    text = " ".join(result.output.split())
    assert f"{n} bars in" in text
    assert f"{n} inserted, 0 updated, 0 unchanged; 0 rejected" in text


def test_permanent_fault_exits_1_naming_pair_range_status(cli, fake):
    fake.faults.add("503", times=None, pair="USD_JPY")
    result = cli(
        "ingest",
        "backfill",
        "--pairs",
        "EUR_USD,USD_JPY",
        "--since",
        "2024-01-04",
        "--timeout",
        "1",
        "--retries",
        "2",
    )
    assert result.exit_code == 1
    text = " ".join(result.stderr.split())  # rich may wrap the line at 80 columns
    assert text.startswith("error: USD_JPY M1 2024-01-04T00:00:00Z..now:")
    assert "(last: HTTP 503," in text
    assert "Traceback" not in text


def test_unknown_pair_exits_1_before_any_request(cli, fake):
    result = cli(
        "ingest", "backfill", "--pairs", "EUR_USD,ABC_DEF", "--since", "2024-01-04"
    )
    assert result.exit_code == 1 and "ABC_DEF" in result.stderr
    assert fake.requests == 0


def test_gaps_and_follow_commands(cli, fake):
    assert (
        cli(
            "ingest", "backfill", "--pairs", "EUR_USD", "--since", "2024-01-04"
        ).exit_code
        == 0
    )
    gaps = cli("ingest", "gaps", "--pairs", "EUR_USD", "--repair")
    assert gaps.exit_code == 0, gaps.output
    assert "0 gaps left" in " ".join(gaps.output.split())
    again = cli("ingest", "gaps", "--pairs", "EUR_USD")
    assert "0 gaps, 0 missing minutes" in " ".join(again.output.split())
    follow = cli(
        "ingest", "follow", "--pairs", "EUR_USD", "--max-polls", "2", "--interval", "0"
    )
    assert follow.exit_code == 0
    assert "stopped after 2 polls" in " ".join(follow.output.split())


def test_fake_serve_command(duck_settings):
    env = {**os.environ, **duck_settings.as_env(), "BQX_OANDA_TOKEN": "t0k"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bqx.cli.main",
            "oanda-fake",
            "serve",
            "--pairs",
            "EUR_USD",
            "--since",
            "2024-01-04",
            "--until",
            "2024-01-05",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        r = requests.get(
            f"{url}/v3/instruments/EUR_USD/candles",
            params={"granularity": "M1", "count": 2},
            headers={"Authorization": "Bearer t0k"},
            timeout=5,
        )
        assert r.status_code == 200 and len(r.json()["candles"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_backfill_sigint_stops_between_batches_exit_130(
    duck_settings, fake, aim, stored_bars, expected_bars
):
    settings = aim(duck_settings, fake)
    fake.latency = 0.05
    env = {**os.environ, **settings.as_env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "ingest", "backfill", "--pairs",
         "EUR_USD,USD_JPY", "--since", "2024-01-01", "--page-size", "200"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    while fake.requests < 6 and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    part = stored_bars(settings)
    assert 0 < len(part) and set(part) <= set(expected_bars(fake))
