"""Online serving: values and their times, push path, repair, faults, HTTP, S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from bqx import features
from bqx.features import FeaturesError
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import free_port, make_settings

PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY"]
VIEWS = {
    "bqx": "features_bqx", "volatility": "features_volatility", "reg": "features_reg",
    "tri": "features_tri", "calendar": "features_calendar",
}  # fmt: skip


def _load_and_build(settings):
    bars = simulate_bars(PAIRS, "2024-01-09", "2024-01-11 12:00", seed=8)
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    features.build(settings)


@pytest.fixture(scope="module")
def prod(tmp_path_factory, pg_database_factory, redis_db):
    import redis

    redis.Redis(port=6379, db=redis_db).flushdb()
    settings = make_settings(
        tmp_path_factory.mktemp("prod"),
        deployment="production",
        pg_database=pg_database_factory(),
        redis_db=redis_db,
        pairs=",".join(PAIRS),
    )
    _load_and_build(settings)
    features.publish(settings)
    return settings


def _expected_online(settings) -> pd.DataFrame:
    frames = []
    for mart in VIEWS.values():
        latest = features.latest_rows(settings, mart).set_index("pair")
        frames.append(latest.drop(columns=["bar_start_at"]))
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f.drop(columns=["event_timestamp"]))
    return out


def _assert_online_equals(online: pd.DataFrame, expected: pd.DataFrame) -> None:
    online = online.set_index("pair").loc[PAIRS]
    for col in expected.columns:
        if col == "event_timestamp":
            continue
        a = expected.loc[PAIRS, col].astype(float)
        b = online[col].astype(float)
        assert ((a.isna() & b.isna()) | np.isclose(a, b, rtol=1e-12)).all(), col


def test_online_values_are_the_last_offline_rows_with_their_time(prod):
    online = features.online_values(prod)
    expected = _expected_online(prod)
    _assert_online_equals(online, expected)
    stamps = online.set_index("pair")["event_timestamp"]
    assert (stamps == pd.to_datetime(expected["event_timestamp"], utc=True).loc[stamps.index]).all()
    # January 2024 is long closed: served, but flagged as not fresh
    assert not online["fresh"].any()
    assert (online["age_minutes"] > 60 * 24).all()


def test_flushed_redis_is_repaired_and_publish_is_idempotent(prod):
    import redis

    before = features.online_values(prod)
    redis.Redis(port=6379, db=prod.redis_db).flushdb()
    empty = features.online_values(prod)
    assert empty["bqx_45"].isna().all()
    features.publish(prod, full=True)
    _assert_online_equals(features.online_values(prod), _expected_online(prod))
    features.publish(prod)  # incremental re-run: nothing changes
    after = features.online_values(prod)
    pd.testing.assert_frame_equal(
        before.drop(columns=["age_minutes"]), after.drop(columns=["age_minutes"])
    )


def test_push_path_writes_only_the_latest_rows(prod):
    import redis

    client = redis.Redis(port=6379, db=prod.redis_db)
    client.flushdb()
    written = features.push_latest(prod)
    assert set(written) >= set(VIEWS) and set(written.values()) == {len(PAIRS)}
    _assert_online_equals(features.online_values(prod), _expected_online(prod))


def test_redis_down_fails_fast_and_names_it(prod):
    down = prod.model_copy(update={"redis_port": free_port()})
    for call in (features.online_values, features.push_latest, features.publish):
        t0 = time.perf_counter()
        with pytest.raises(FeaturesError, match=r"Redis at 127\.0\.0\.1:\d+ is unreachable"):
            call(down)
        assert time.perf_counter() - t0 < 1.0


def test_feature_server_over_http(prod):
    port = free_port()
    env = {**os.environ, **prod.as_env()}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        body = json.dumps(
            {"feature_service": "online_v1", "entities": {"pair": PAIRS}}
        ).encode()
        deadline = time.time() + 90
        while True:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/get-online-features", data=body,
                    headers={"Content-Type": "application/json"},
                )  # fmt: skip
                reply = json.load(urllib.request.urlopen(req, timeout=5))
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                assert time.time() < deadline, "feature server did not start"
                time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    names = reply["metadata"]["feature_names"]
    values = dict(zip(names, (r["values"] for r in reply["results"])))
    assert values["pair"] == PAIRS
    expected = _expected_online(prod)
    assert np.allclose(values["bqx_45"], expected.loc[PAIRS, "bqx_45"].astype(float))


@pytest.fixture
def moto_s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_s3_deployment_serves_the_same_frames(tmp_path, moto_s3):
    import boto3

    local = make_settings(tmp_path / "local", pairs=",".join(PAIRS))
    _load_and_build(local)
    features.publish(local)
    mart = pd.read_parquet(local.marts_dir / "features_bqx")
    entity = mart[["pair", "event_timestamp"]].sample(500, random_state=2)
    a = features.training_frame(PAIRS, None, None, settings=local, entity_df=entity)
    expected_online = _expected_online(local)
    empty = make_settings(tmp_path / "empty", deployment="s3", s3_endpoint_url=moto_s3)
    with pytest.raises(FeaturesError, match="no Parquet marts"):
        features.export_marts_to_s3(empty)
    # same warehouse and marts, served from S3 instead of local files
    s3 = local.model_copy(
        update={"deployment": "s3", "s3_bucket": "bqx-test", "s3_endpoint_url": moto_s3}
    )
    with pytest.raises(FeaturesError, match="s3://bqx-test/marts/"):
        features.publish(s3)  # the bucket does not exist yet
    boto3.client("s3", endpoint_url=moto_s3).create_bucket(Bucket="bqx-test")
    features.publish(s3)
    keys = boto3.client("s3", endpoint_url=moto_s3).list_objects_v2(Bucket="bqx-test")
    uploaded = [k["Key"] for k in keys["Contents"]]  # marts/<mart>/<day>.parquet
    assert len({k.rsplit("/", 1)[0] for k in uploaded}) == 10
    assert len(uploaded) == len(list(local.marts_dir.glob("*/*.parquet")))
    b = features.training_frame(PAIRS, None, None, settings=s3, entity_df=entity)
    pd.testing.assert_frame_equal(a, b)
    assert b["bqx_45"].notna().sum() > 400
    redis_free = features.online_values(s3)  # SQLite online store of the s3 deployment
    _assert_online_equals(redis_free, expected_online)
    fs = features.store(s3)
    assert fs.get_data_source("bqx_source").path == "s3://bqx-test/marts/features_bqx"


def test_follow_on_duckdb_runs_dbt_in_process_and_releases_the_file(tmp_path):
    """`bqx features follow` on the embedded warehouse: dbt stays loaded, each
    refresh reaches the online store, and between refreshes another process can
    open the warehouse file (dbt-duckdb would otherwise keep it locked)."""
    local = make_settings(tmp_path / "local", pairs=",".join(PAIRS))
    _load_and_build(local)
    features.publish(local)
    staging = "select count(*) from duckdb_views() where view_name = 'stg_oanda__candles'"
    with open_warehouse(local) as wh:
        wh.execute("drop view staging.stg_oanda__candles")
    refresher = features.FeatureRefresher(local)
    with open_warehouse(local, read_only=True) as wh:  # the views are made at start
        assert wh.query_df(staging).iloc[0, 0] == 1
    assert refresher.new_bars()
    refresher.refresh()
    assert "stg_oanda__candles" not in refresher.timings["nodes"]  # nor by a refresh
    opener = [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()"]
    last = pd.Timestamp("2024-01-11 11:59", tz="UTC")
    for k in (1, 2):
        # another process writes to the file between refreshes
        done = subprocess.run(opener + [str(local.duckdb_path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        bar = simulate_bars(PAIRS, last, last + pd.Timedelta(minutes=k + 1), seed=4)
        with open_warehouse(local) as wh:
            wh.upsert_candles(bar[bar["bar_start"] == last + pd.Timedelta(minutes=k)], source="simulator:M")
        assert refresher.new_bars()
        written = refresher.refresh()
        assert set(written.values()) == {len(PAIRS)}
        assert {"features_bqx", "labels_forward"} <= set(refresher.timings["nodes"])
        online = features.online_values(local)
        assert (online["event_timestamp"] == last + pd.Timedelta(minutes=k + 1)).all()
    _assert_online_equals(online, _expected_online(local))
    done = subprocess.run(opener + [str(local.duckdb_path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


class PrivateRedis:
    """A redis-server of this test alone on a free port, no persistence: stopping
    it loses everything, as a restarted cache without a snapshot does. The shared
    Redis on 6379 is never touched."""

    def __init__(self, workdir) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.time() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, "redis-server exited"
                assert time.time() < deadline, "redis-server did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: gone at once, nothing saved
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_stopped_fails_fast_and_a_publish_restores_it(
    prod, private_redis, monkeypatch
):
    """A real Redis server stopped: reads and ``bqx doctor`` fail within 1 s naming
    Redis and its address; restarted empty, a plain publish restores every value."""
    from typer.testing import CliRunner

    from bqx.cli.main import app
    from bqx.doctor import failed, run_checks
    from bqx.settings import get_settings

    port = private_redis.port
    settings = prod.model_copy(update={"redis_port": port, "redis_db": 0})
    features.push_latest(settings)  # fill the new Redis (the fast path)
    before = features.online_values(settings)
    _assert_online_equals(before, _expected_online(settings))

    private_redis.stop()
    where = rf"Redis at 127\.0\.0\.1:{port} is unreachable"
    for call in (features.online_values, features.push_latest, features.publish):
        t0 = time.perf_counter()
        with pytest.raises(FeaturesError, match=where):
            call(settings)
        assert time.perf_counter() - t0 < 1.0, call.__name__
    t0 = time.perf_counter()
    checks = run_checks(settings)
    assert time.perf_counter() - t0 < 1.0
    assert [c.component for c in failed(checks)] == ["redis"]
    redis_check = next(c for c in checks if c.component == "redis")
    assert redis_check.target == f"redis://127.0.0.1:{port}/0"
    assert f"Redis at 127.0.0.1:{port} is unreachable" in redis_check.hint
    assert redis_check.latency_ms < 1000
    monkeypatch.chdir(settings.data_dir)  # no stray .env
    env = {**settings.as_env(), "COLUMNS": "250"}
    get_settings.cache_clear()
    t0 = time.perf_counter()
    result = CliRunner().invoke(app, ["doctor"], env=env)
    assert time.perf_counter() - t0 < 1.0
    assert result.exit_code == 1
    assert f"Redis at 127.0.0.1:{port} is unreachable" in result.output
    assert "required check(s) failed: redis" in str(result.exception)

    private_redis.start()  # the same port, empty
    assert features.online_store_empty(settings)
    features.publish(settings)  # a plain publish sees the empty store
    after = features.online_values(settings)
    assert not features.online_store_empty(settings)
    pd.testing.assert_frame_equal(
        before.drop(columns=["age_minutes"]), after.drop(columns=["age_minutes"])
    )
