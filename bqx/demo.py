"""The embedded demo: simulated bars -> warehouse -> dbt -> Feast, end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bqx.cli.common import (
    SUMMARY_COLUMNS,
    console,
    frame_table,
    load_settings,
    step,
)
from bqx.runs import current_run


def run_demo(days: int = 14, entity_rows: int = 3000, seed: int = 7) -> None:
    """Simulate ``days`` of bars ending now, build, publish, then read both ways."""
    from bqx import features
    from bqx.cli.ingest import simulate_and_load
    from bqx.timeutil import utc_now_minute

    settings = load_settings()
    pairs = settings.pair_list
    end = utc_now_minute()
    start = end - pd.Timedelta(days=days)
    console.print(
        f"[bold]bqx demo[/]: {len(pairs)} pairs, {start:%Y-%m-%d} to {end:%Y-%m-%d} "
        f"UTC, warehouse {settings.warehouse}, deployment {settings.deployment}, "
        f"data in {settings.data_dir}"
    )
    with step("1. ingest: simulate M1 bars and load raw.candles_m1"):
        current_run().stage("ingest")
        bars, total = simulate_and_load(settings, pairs, start, end, seed)
        console.print(
            f"{len(bars):,} bars: {total.inserted:,} inserted, "
            f"{total.unchanged:,} already there"
        )
    with step("2. validate raw bars (Great Expectations gate)"):
        current_run().stage("validate raw")
        from bqx.cli.validate import results_table
        from expectations.gate import require_pass

        console.print(results_table(require_pass(settings, "raw")))
    with step("3. features build (dbt build)"):
        current_run().stage("features build")
        features.build(settings)
    with step("4. features publish (quality gate, feast apply, materialize)"):
        current_run().stage("publish")
        views = features.publish(
            settings, on_gate=lambda report: console.print(results_table(report))
        )
        console.print(f"materialized views: {', '.join(views)}")
    with step(f"5. point-in-time training frame ({entity_rows:,} entity rows)"):
        current_run().stage("training frame")
        rng = np.random.default_rng(seed)
        sample = bars.iloc[rng.choice(len(bars), entity_rows, replace=False)]
        entity_df = pd.DataFrame(
            {
                "pair": sample["pair"].to_numpy(),
                # the entity time is a bar END: it sees exactly that bar
                "event_timestamp": sample["bar_start"] + pd.Timedelta(minutes=1),
            }
        )
        frame = features.training_frame(
            pairs, None, None, service=_training_service(settings), entity_df=entity_df
        )
        console.print(f"{len(frame):,} rows x {frame.shape[1]} columns")
        head = ["pair", "event_timestamp", "bqx_45", "ret_std_45", "reg_slope_45",
                "corr_base_base_60", "tri_err_mean", "fwd_ret_15", "target_bqx45_h15"]
        console.print(frame_table(frame, head, "training frame (first rows)", 8))
    with step("6. latest online values of every pair"):
        current_run().stage("online values")
        online = features.online_values(settings, pairs)
        head = ["pair", "event_timestamp", "age_minutes", "fresh"]
        console.print(frame_table(online, head + list(SUMMARY_COLUMNS), "online values"))


def _training_service(settings) -> str:
    fs = __import__("bqx.features", fromlist=["store"]).store(settings)
    names = {s.name for s in fs.list_feature_services()}
    return "tft_v1" if "tft_v1" in names else "online_v1"
