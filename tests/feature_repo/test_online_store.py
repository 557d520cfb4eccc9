"""bqx's Redis online store answers exactly as Feast's stock Redis store.

The packed rows (bqx/online_store.py) are written beside Feast's own layout, so
the same Redis db can be read both ways: every answer of the fast path is
compared with Feast's stock read of the same keys (values, event times, statuses,
the protobuf, and the feature server's JSON).
"""

from __future__ import annotations

import math

import pytest
from feast.feature_server_utils import convert_response_to_dict
from feast.infra.online_stores.redis import RedisOnlineStore

from bqx import features
from bqx.online_store import BqxOnlineResponse, BqxRedisOnlineStore
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import make_settings

PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY", "GBP_USD"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory, pg_database_factory, redis_db):
    import redis

    redis.Redis(port=6379, db=redis_db).flushdb()
    settings = make_settings(
        tmp_path_factory.mktemp("online_store"),
        deployment="production",
        pg_database=pg_database_factory(),
        redis_db=redis_db,
        pairs=",".join(PAIRS),
    )
    # GBP_USD ends a day earlier: its rows are older, and nulls (no triangle,
    # missing correlation categories) are in the served rows
    bars = simulate_bars(PAIRS, "2024-01-09", "2024-01-11 12:00", seed=3)
    bars = bars[(bars["pair"] != "GBP_USD") | (bars["bar_start"] < "2024-01-10 18:00")]
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        wh.upsert_candles(bars, source="simulator:M")
    features.build(settings, command="run")
    features.publish(settings)
    return settings


@pytest.fixture(scope="module")
def fs(settings):
    store = features.store(settings)
    assert isinstance(store._get_provider().online_store, BqxRedisOnlineStore)
    return store


def _both(fs, features_arg, rows, full_feature_names=False):
    """(fast answer, Feast's stock answer) for the same request."""
    fast = fs.get_online_features(
        features=features_arg, entity_rows=rows, full_feature_names=full_feature_names
    )
    online_store = fs._get_provider().online_store
    stock = RedisOnlineStore.get_online_features(
        online_store, fs.config, features_arg, rows, fs.registry, fs.project,
        full_feature_names,
    )  # fmt: skip
    return fast, stock


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def _assert_identical(fast, stock) -> None:
    assert isinstance(fast, BqxOnlineResponse)
    for ts in (False, True):
        got, want = fast.to_dict(ts), stock.to_dict(ts)
        assert list(got) == list(want)
        for name in want:
            assert len(got[name]) == len(want[name]), name
            assert all(_same(x, y) for x, y in zip(got[name], want[name])), name
            assert [type(x) for x in got[name]] == [type(x) for x in want[name]], name
    assert fast.proto == stock.proto
    assert fast.to_json_dict() == convert_response_to_dict(stock.proto)


def test_whole_service_with_unknown_and_repeated_entities(fs):
    rows = [{"pair": p} for p in ["USD_JPY", "EUR_USD", "NZD_CAD", "USD_JPY", "GBP_USD", "EUR_JPY"]]
    fast, stock = _both(fs, fs.get_feature_service("online_v1"), rows)
    _assert_identical(fast, stock)
    got = fast.to_dict()
    assert got["pair"][2] == "NZD_CAD" and got["bqx_45"][2] is None  # not found
    assert any(v is None for v in got["tri_err_mean"])  # a null value, found row
    assert isinstance(got["minutes_since_open"][0], int)
    assert isinstance(got["is_weekend_approach"][0], bool)
    seconds = fast.to_dict(include_event_timestamps=True)["bqx_45__ts"]
    assert seconds[4] < seconds[1]  # GBP_USD's row is older


def test_feature_lists_and_full_feature_names(fs):
    refs = ["calendar:gap_minutes", "bqx:bqx_90", "corr:corr_base_quote_60", "bqx:bqx_45"]
    rows = [{"pair": p} for p in PAIRS]
    for full in (False, True):
        _assert_identical(*_both(fs, refs, rows, full_feature_names=full))
    fast = fs.get_online_features(features=refs, entity_rows=rows, full_feature_names=True)
    names = list(fast.to_dict())
    assert names[:2] == ["pair", "calendar__gap_minutes"]  # views in request order
    assert sorted(names[2:4]) == ["bqx__bqx_45", "bqx__bqx_90"]
    frame = fast.to_df()
    assert frame.shape == (len(PAIRS), 5)


def test_rows_from_another_schema_take_feasts_path(fs):
    import redis

    from bqx.online_store import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    online_store = fs._get_provider().online_store
    client = online_store._get_client(fs.config.online_store)
    assert isinstance(client, redis.Redis)
    key = _redis_key(
        fs.project,
        EntityKey(join_keys=["pair"], entity_values=[Value(string_val="EUR_USD")]),
        entity_key_serialization_version=fs.config.entity_key_serialization_version,
    )
    packed = client.hget(key, "_bqx:bqx")
    try:
        client.hset(key, "_bqx:bqx", b"\0" * 8 + packed[8:])  # another fingerprint
        fast = fs.get_online_features(
            features=fs.get_feature_service("online_v1"), entity_rows=[{"pair": "EUR_USD"}]
        )
        assert not isinstance(fast, BqxOnlineResponse)  # Feast's own answer
        assert fast.to_dict()["bqx_45"][0] is not None
    finally:
        client.hset(key, "_bqx:bqx", packed)


def test_an_older_write_never_replaces_a_newer_row(fs):
    import pandas as pd

    svc = fs.get_feature_service("online_v1")
    rows = [{"pair": "EUR_USD"}]
    before = fs.get_online_features(features=svc, entity_rows=rows).to_dict(True)
    stale = pd.DataFrame(
        {
            "pair": ["EUR_USD"],
            "event_timestamp": [pd.Timestamp("2024-01-09 08:00", tz="UTC")],
            **{f"bqx_{w}": [1.0] for w in (45, 90, 180, 360, 720, 1440, 2880)},
        }
    )
    fs.write_to_online_store("bqx", stale)
    fast, stock = _both(fs, svc, rows)
    _assert_identical(fast, stock)
    assert fast.to_dict(True) == before



def test_feature_server_answers_as_feasts(fs):
    """bqx's /get-online-features route gives Feast's JSON body, both paths."""
    import json
    import threading
    import time
    import urllib.request

    import uvicorn

    from bqx.feature_server import create_app
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(fs), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def post(body: dict) -> dict:
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/get-online-features",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        return json.load(urllib.request.urlopen(req, timeout=10))

    try:
        deadline = time.time() + 30
        while not server.started:
            assert time.time() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        svc = fs.get_feature_service("online_v1")
        pairs = ["GBP_USD", "NZD_CAD", "EUR_USD"]
        refs = ["bqx:bqx_45", "calendar:is_weekend_approach"]
        requests = [
            ({"feature_service": "online_v1"}, svc, False),
            ({"features": refs, "full_feature_names": True}, refs, True),
        ]
        for body, features_arg, full in requests:
            reply = post({**body, "entities": {"pair": pairs}})
            _, stock = _both(fs, features_arg, [{"pair": p} for p in pairs], full)
            assert reply == convert_response_to_dict(stock.proto)
        # Feast's other routes are still served
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
        assert health.status == 200
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_follow_pushes_each_new_bar_online(settings, fs):
    """`bqx features follow`: a bar stored in the warehouse is soon served online,
    with the values of the rebuilt marts (dbt kept loaded between refreshes). The
    follower looks for bars only every 10 minutes here: the load's notification
    is what wakes it."""
    import os
    import subprocess
    import sys
    import time

    import pandas as pd

    proc = subprocess.Popen(
        [sys.executable, "-m", "bqx.cli.main", "features", "follow",
         "--interval", "600", "--max-refreshes", "3"],
        env={**os.environ, **settings.as_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("refresh 1:"):  # caught up with what is stored
                break
        else:
            pytest.fail("follow stopped early:\n" + "".join(lines))
        last = pd.Timestamp("2024-01-11 11:59", tz="UTC")
        for k in (1, 2):
            bar = simulate_bars(PAIRS, last, last + pd.Timedelta(minutes=k + 1), seed=4)
            bar = bar[(bar["bar_start"] == last + pd.Timedelta(minutes=k)) & (bar["pair"] != "GBP_USD")]
            with open_warehouse(settings) as wh:
                wh.upsert_candles(bar, source="simulator:M")
            want = int((last + pd.Timedelta(minutes=k + 1)).timestamp())
            deadline = time.time() + 60
            while True:
                got = fs.get_online_features(
                    features=["bqx:bqx_45"], entity_rows=[{"pair": "EUR_USD"}]
                ).to_dict(include_event_timestamps=True)["bqx_45__ts"][0]
                if got == want:
                    break
                assert time.time() < deadline and proc.poll() is None, "".join(lines)
                time.sleep(0.05)
        out, _ = proc.communicate(timeout=60)
        lines.append(out)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines)
    assert "refresh 3:" in "".join(lines)
    # what is served is the marts' newest row of each pair
    served = fs.get_online_features(
        features=fs.get_feature_service("online_v1"), entity_rows=[{"pair": p} for p in PAIRS]
    ).to_df().set_index("pair")
    for mart, column in (("features_bqx", "bqx_45"), ("features_corr", "corr_base_quote_60")):
        latest = features.latest_rows(settings, mart).set_index("pair")[column]
        pd.testing.assert_series_equal(
            served.loc[PAIRS, column], latest.loc[PAIRS], check_names=False
        )
    # the labels (never online) were refreshed after the push: the new bars have
    # rows, and the bar 15 minutes before the last one now has its 15-minute return
    with open_warehouse(settings, read_only=True) as wh:
        labels = wh.query_df(
            "select bar_start_at, fwd_ret_15 from marts.labels_forward "
            "where pair = 'EUR_USD' and bar_start_at >= ? order by bar_start_at",
            [pd.Timestamp("2024-01-11 11:46", tz="UTC")],
        )
    assert pd.to_datetime(labels["bar_start_at"], utc=True).max() == pd.Timestamp(
        "2024-01-11 12:01", tz="UTC"
    )
    assert labels["fwd_ret_15"].notna().tolist() == [True] + [False] * (len(labels) - 1)
