"""The bqx offline stores against Feast's own semantics and an independent audit.

1. Parity: on small data with duplicates, created-timestamp ties, a TTL and both
   feature-name styles, the bqx DuckDB store returns the same frame as Feast's stock
   DuckDB store.
2. Point-in-time audit: >= 10,000 random (pair, t) rows over simulated and real
   bars, on `local` and `production`: every feature equals the feature of the last
   bar that ended at or before t (within the TTL) and every label is that of exactly
   the bar ending at t; zero mismatches.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Float64, Int64

from bqx import features
from bqx.warehouse import open_warehouse
from ingestion.simulator import simulate_bars
from tests.conftest import make_settings

SIM_PAIRS = ["EUR_USD", "USD_JPY", "EUR_JPY", "GBP_USD"]
REAL_PAIRS = ["EUR_USD", "USD_JPY", "GBP_USD"]
FRESHNESS = pd.Timedelta(minutes=30)


# ----------------------------------------------------------------- 1. parity


def _parity_store(tmp_path, offline: dict, source_path: str) -> tuple[FeatureStore, list]:
    ent = Entity(name="pair", join_keys=["pair"])
    src = FileSource(
        name="prices_source",
        path=source_path,
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    fv = FeatureView(
        name="prices",
        entities=[ent],
        ttl=timedelta(minutes=5),
        schema=[Field(name="x", dtype=Float64), Field(name="n", dtype=Int64)],
        source=src,
    )
    # a second view on its own copy of the file (the stock ibis store cannot join
    # two views of one source with full feature names)
    src2 = FileSource(
        name="slow_source",
        path=source_path.replace(".parquet", "_slow.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    fv2 = FeatureView(
        name="slow",
        entities=[ent],
        ttl=None,
        schema=[Field(name="y", dtype=Float64)],
        source=src2,
    )
    config = RepoConfig(
        project="parity",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        offline_store=offline,
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
        entity_key_serialization_version=3,
    )
    fs = FeatureStore(config=config)
    fs.apply([ent, src, src2, fv, fv2])
    return fs, ["prices:x", "prices:n", "slow:y"]


def test_same_frames_as_the_stock_feast_store(tmp_path):
    rng = np.random.default_rng(3)
    t0 = pd.Timestamp("2024-01-08 10:00", tz="UTC")
    rows = []
    for pair in ["EUR_USD", "USD_JPY"]:
        for i in range(0, 120, 3):  # a row every 3 minutes
            ts = t0 + pd.Timedelta(minutes=i)
            rows.append((pair, ts, ts, float(rng.normal()), i, float(rng.normal())))
            if i % 15 == 0:  # a later correction at the same event time wins
                rows.append(
                    (pair, ts, ts + pd.Timedelta(seconds=30), 100.0 + i, -i, 7.0)
                )
    source = pd.DataFrame(rows, columns=["pair", "event_timestamp", "created", "x", "n", "y"])
    path = tmp_path / "prices.parquet"
    source.to_parquet(path)
    source.to_parquet(tmp_path / "prices_slow.parquet")
    entity = pd.DataFrame(
        {
            "pair": rng.choice(["EUR_USD", "USD_JPY", "GBP_USD"], 400),
            "event_timestamp": t0
            + pd.to_timedelta(rng.integers(-300, 140 * 60, 400), unit="s"),
        }
    )
    entity.loc[:50, "event_timestamp"] = entity.loc[:50, "event_timestamp"].dt.floor("3min")
    frames = {}
    for name, offline in {
        "stock": {"type": "duckdb"},
        "bqx": {"type": "bqx.offline_store.BqxDuckDBOfflineStore"},
    }.items():
        fs, refs = _parity_store(tmp_path / name, offline, str(path))
        for full in (False, True):
            # the stock ibis store fails on full names of a view without TTL
            wanted = refs if not full else refs[:2]
            frame = fs.get_historical_features(
                entity_df=entity, features=wanted, full_feature_names=full
            ).to_df()
            frames[name, full] = frame.sort_values(
                ["pair", "event_timestamp"], ignore_index=True
            )
    for full in (False, True):
        stock, ours = frames["stock", full], frames["bqx", full]
        assert list(ours.columns) == list(stock.columns)
        assert len(ours) == len(stock) == len(entity)
        for col in ours.columns[2:]:
            a = pd.to_numeric(stock[col], errors="coerce")
            b = pd.to_numeric(ours[col], errors="coerce")
            assert (a.isna() == b.isna()).all(), col
            assert np.allclose(a[a.notna()], b[b.notna()]), col
    # the TTL really cut something, and the correction really won somewhere
    assert frames["bqx", False]["x"].isna().sum() > frames["bqx", False]["y"].isna().sum()
    assert (frames["bqx", False]["x"] >= 100).any()


def test_entity_order_is_kept(tmp_path):
    t0 = pd.Timestamp("2024-01-08 10:00", tz="UTC")
    source = pd.DataFrame(
        {
            "pair": ["EUR_USD"] * 10,
            "event_timestamp": [t0 + pd.Timedelta(minutes=i) for i in range(10)],
            "created": [t0] * 10,
            "x": np.arange(10.0), "n": np.arange(10), "y": np.arange(10.0),
        }
    )  # fmt: skip
    source.to_parquet(tmp_path / "p.parquet")
    source.to_parquet(tmp_path / "p_slow.parquet")
    fs, refs = _parity_store(
        tmp_path, {"type": "bqx.offline_store.BqxDuckDBOfflineStore"},
        str(tmp_path / "p.parquet"),
    )  # fmt: skip
    entity = pd.DataFrame(
        {"pair": ["EUR_USD"] * 3, "event_timestamp": [t0 + pd.Timedelta(minutes=m) for m in (7, 2, 5)]}
    )
    out = fs.get_historical_features(entity_df=entity, features=refs).to_df()
    assert out["x"].tolist() == [7.0, 2.0, 5.0]


# ------------------------------------------------------------ 2. the PIT audit


def _load(settings, dataset: str, real_bars_dir) -> None:
    with open_warehouse(settings) as wh:
        wh.ensure_schema()
        if dataset == "simulated":
            bars = simulate_bars(SIM_PAIRS, "2024-01-08", "2024-01-11 06:00", seed=21)
            wh.upsert_candles(bars, source="simulator:M")
        else:
            from ingestion.csv_import import import_files

            files = [real_bars_dir / f"{p.replace('_', '')}_202401.csv.gz" for p in REAL_PAIRS]
            import_files(wh, files, price="bid")
            # the first two weeks of January keep the audit quick in CI
            wh.execute("delete from raw.candles_m1 where bar_start >= '2024-01-13'")


@pytest.fixture(scope="module", params=["local", "production"])
def deployment(request, tmp_path_factory):
    return request.param


def _settings(deployment, tmp, pg_database_factory, redis_db, pairs):
    if deployment == "local":
        return make_settings(tmp, pairs=",".join(pairs))
    return make_settings(
        tmp,
        deployment="production",
        pg_database=pg_database_factory(),
        redis_db=redis_db,
        pairs=",".join(pairs),
    )


def _read_marts(settings) -> dict[str, pd.DataFrame]:
    """Every mart, read straight from the warehouse (not through Feast)."""
    names = [
        "features_idx", "features_bqx", "features_volatility", "features_vwap",
        "features_reg", "features_corr", "features_strength", "features_tri",
        "features_calendar", "labels_forward",
    ]  # fmt: skip
    out = {}
    with open_warehouse(settings, read_only=True) as wh:
        for name in names:
            frame = wh.query_df(f"select * from marts.{name}")
            frame["event_timestamp"] = pd.to_datetime(
                frame["event_timestamp"], utc=True
            ).astype("datetime64[ns, UTC]")
            out[name] = frame.drop(columns=["bar_start_at"]).sort_values("event_timestamp")
    return out


def _expected(entity: pd.DataFrame, marts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The audit's own point-in-time join (pandas merge_asof, not SQL)."""
    left = entity.assign(
        _row=np.arange(len(entity)),
        event_timestamp=entity["event_timestamp"].astype("datetime64[ns, UTC]"),
    ).sort_values("event_timestamp")
    result = left
    for name, mart in marts.items():
        exact = name == "labels_forward"
        joined = pd.merge_asof(
            left[["_row", "pair", "event_timestamp"]],
            mart,
            on="event_timestamp",
            by="pair",
            direction="backward",
            tolerance=pd.Timedelta(0) if exact else FRESHNESS,
            allow_exact_matches=True,
        )
        result = result.merge(joined.drop(columns=["pair", "event_timestamp"]), on="_row")
    return result.sort_values("_row").drop(columns="_row").reset_index(drop=True)


def _entity(marts: dict[str, pd.DataFrame], pairs, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ends = marts["features_bqx"][["pair", "event_timestamp"]]
    at_bar = ends.iloc[rng.choice(len(ends), n // 2)]
    lo, hi = ends["event_timestamp"].min(), ends["event_timestamp"].max()
    span = int((hi - lo).total_seconds())
    anywhere = pd.DataFrame(
        {
            "pair": rng.choice(pairs, n - n // 2),
            "event_timestamp": lo + pd.to_timedelta(rng.integers(-600, span + 3600, n - n // 2), unit="s"),
        }
    )
    out = pd.concat([at_bar, anywhere], ignore_index=True)
    out["event_timestamp"] = out["event_timestamp"].astype("datetime64[ns, UTC]")
    return out


@pytest.mark.parametrize("dataset", ["simulated", "real"])
def test_point_in_time_audit(
    dataset, deployment, tmp_path, pg_database_factory, redis_db, real_bars_dir
):
    if dataset == "real" and real_bars_dir is None:
        pytest.skip("../shared/data/fx_m1 is not present")
    pairs = SIM_PAIRS if dataset == "simulated" else REAL_PAIRS
    settings = _settings(deployment, tmp_path / "bqx", pg_database_factory, redis_db, pairs)
    _load(settings, dataset, real_bars_dir)
    features.build(settings)
    features.apply(settings)
    marts = _read_marts(settings)
    entity = _entity(marts, pairs, 10_000, seed=7)
    got = features.training_frame(
        pairs, None, None, service="tft_v1", settings=settings, entity_df=entity
    )
    want = _expected(entity, marts)
    # the store keeps the entity order; compare row by row
    got = got.sort_values(["pair", "event_timestamp"], kind="stable", ignore_index=True)
    want = want.sort_values(["pair", "event_timestamp"], kind="stable", ignore_index=True)
    assert len(got) == len(want) == 10_000
    assert (got["pair"] == want["pair"]).all()
    assert (pd.to_datetime(got["event_timestamp"], utc=True) == want["event_timestamp"]).all()
    mismatches = {}
    for col in want.columns:
        if col in ("pair", "event_timestamp"):
            continue
        a = pd.to_numeric(want[col].astype("float64"), errors="coerce")
        b = pd.to_numeric(got[col].astype("float64"), errors="coerce")
        bad = (a.isna() != b.isna()) | (
            a.notna() & b.notna() & ~np.isclose(a, b, rtol=1e-12, atol=0)
        )
        if bad.any():
            mismatches[col] = int(bad.sum())
    assert mismatches == {}
    # the audit is not vacuous: labels exist only at exact bar ends, and some
    # entity rows fall outside the freshness window
    assert got["fwd_ret_15"].notna().sum() > 3000
    assert got["bqx_45"].isna().sum() > 0
