"""The online row joins the offline history only when it is fresh and newer."""

from __future__ import annotations

import pandas as pd

from training.predict import with_online


def test_with_online_appends_fresh_newer_rows_only():
    t = pd.Timestamp("2024-01-10 12:00", tz="UTC")
    history = pd.DataFrame({"pair": ["EUR_USD", "GBP_USD"], "event_timestamp": [t, t],
                            "bqx_45": [0.1, 0.2]})
    online = pd.DataFrame({
        "pair": ["EUR_USD", "GBP_USD", "USD_JPY"],
        "event_timestamp": [t + pd.Timedelta("1min"), t, t + pd.Timedelta("1min")],
        "age_minutes": [0.5, 1.5, 0.5],
        "fresh": [True, True, False],
        "bqx_45": [0.3, 0.9, 0.4],
    })
    out = with_online(history, online)
    assert list(out.columns) == ["pair", "event_timestamp", "bqx_45"]
    assert len(out) == 3
    new = out.iloc[-1]
    assert (new["pair"], new["bqx_45"]) == ("EUR_USD", 0.3)
