"""From a Feast training frame to model-ready rows.

:func:`load_frame` is the one call into the feature store. :func:`prepare_frame`
then adds, per pair and on the full M1 rows (before any resampling):

- ``label_end``: when the label becomes known (the end of bar ``n+h``);
- ``realized``: the latest label value already known at the row's time (the
  last-value persistence baseline and N-BEATS' input series; never a future value);
- calendar reals from ``event_timestamp`` (time of day and week, sin/cos);
- ``base``/``quote`` currencies;

and keeps one row per ``every`` minutes of clock time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.config import ConfigError, ExperimentConfig, known_column

CALENDAR = ("tod_sin", "tod_cos", "dow_sin", "dow_cos")


class DataError(ValueError):
    """A training frame that cannot be used."""


def load_frame(config: ExperimentConfig, settings=None) -> pd.DataFrame:
    """The experiment's training frame from the feature store.

    Calls ``bqx.training_frame`` (Feast ``get_historical_features``) for the
    configured pairs, period and feature service.
    """
    import bqx  # the Feast helpers live in the foundation package

    from bqx.settings import get_settings

    settings = settings or get_settings()
    if not (config.start and config.end):
        raise ConfigError(f"{config.name}: start and end are needed to load a frame")
    pairs = config.pairs or settings.pair_list
    return bqx.training_frame(
        pairs, config.start, config.end, service=config.service, settings=settings
    )


def feature_columns(frame: pd.DataFrame, config: ExperimentConfig) -> list[str]:
    """The configured feature columns present in the frame (in config order).

    Raises:
        DataError: when none of them is present.
    """
    cols = [c for c in config.features if c in frame.columns]
    if not cols:
        raise DataError(
            f"none of the features {config.features} is in the frame "
            f"(columns: {sorted(frame.columns)})"
        )
    return cols


def known_columns(frame: pd.DataFrame, config: ExperimentConfig) -> list[str]:
    """Calendar reals: the derived sin/cos ones plus configured columns present."""
    return list(CALENDAR) + [c for c in config.known if c in frame.columns]


def _check(frame: pd.DataFrame, config: ExperimentConfig) -> None:
    missing = {"pair", "event_timestamp", config.label} - set(frame.columns)
    if missing:
        raise DataError(f"training frame lacks columns {sorted(missing)}")
    if frame.duplicated(["pair", "event_timestamp"]).any():
        dup = frame.loc[frame.duplicated(["pair", "event_timestamp"]), "pair"]
        raise DataError(f"duplicate (pair, event_timestamp) rows for {set(dup)}")


def _label_end(g: pd.DataFrame, label: str, h: int) -> pd.Series:
    span = f"fwd_span_minutes_{h}"
    if span in g.columns:
        end = g["event_timestamp"] + pd.to_timedelta(g[span], unit="min")
    else:
        end = g["event_timestamp"].shift(-h)
    return end.dt.as_unit("ns").where(g[label].notna())


def _realized(g: pd.DataFrame, label: str) -> pd.Series:
    known = (
        g.loc[g["label_end"].notna(), ["label_end", label]]
        .sort_values("label_end")
        .rename(columns={label: "realized"})
    )
    left = g[["event_timestamp"]].reset_index()
    merged = pd.merge_asof(
        left.sort_values("event_timestamp"),
        known,
        left_on="event_timestamp",
        right_on="label_end",
        direction="backward",
        allow_exact_matches=True,
    ).set_index("index")
    return merged["realized"].reindex(g.index)


def add_calendar(frame: pd.DataFrame) -> pd.DataFrame:
    """Time-of-day and day-of-week as sin/cos of ``event_timestamp``."""
    ts = frame["event_timestamp"].dt
    tod = (ts.hour * 60 + ts.minute) / 1440.0
    dow = (ts.dayofweek + tod) / 7.0
    return frame.assign(
        tod_sin=np.sin(2 * np.pi * tod),
        tod_cos=np.cos(2 * np.pi * tod),
        dow_sin=np.sin(2 * np.pi * dow),
        dow_cos=np.cos(2 * np.pi * dow),
    )


def prepare_frame(
    frame: pd.DataFrame,
    config: ExperimentConfig,
    anchor: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Model-ready rows: labels' end times, realized labels, calendar, resampling.

    Args:
        frame: a training frame (``pair``, ``event_timestamp``, features, labels),
            one row per pair and M1 bar.
        config: the experiment.
        anchor: keep rows on the ``every`` grid through this time (default:
            whole multiples of ``every``); forecasting "now" anchors at the
            latest row.

    Returns:
        Rows sorted by pair and time, one per ``config.every`` of clock time, with
        the columns ``pair base quote event_timestamp label_end realized target``
        (``target`` = the configured label), the calendar reals, the features and
        the ``known_`` baseline column when the label is a BQX target.

    Raises:
        DataError: when required columns are missing or rows are duplicated.
    """
    _check(frame, config)
    h, label = config.horizon, config.label
    df = frame.copy()
    # Feast may hand microsecond timestamps: one unit for every merge below
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True).dt.as_unit(
        "ns"
    )
    df = df.sort_values(["pair", "event_timestamp"], kind="stable")
    parts = []
    for _, g in df.groupby("pair", sort=True):
        g = g.copy()
        g["label_end"] = _label_end(g, label, h)
        g["realized"] = _realized(g, label)
        parts.append(g)
    df = pd.concat(parts)
    step = config.every_minutes
    if step > 1:
        minutes = df["event_timestamp"].astype("int64") // 60_000_000_000
        offset = 0 if anchor is None else pd.Timestamp(anchor).value // 60_000_000_000
        df = df[(minutes - offset) % step == 0]
    df = add_calendar(df)
    for col in {*config.features, *config.known} & set(df.columns):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
        # A feature that is null on every row of a pair is structurally absent
        # (e.g. a correlation category with no pair in the universe): 0, so the
        # pair is not dropped; warm-up and gap nulls stay null (rows dropped).
        absent = df.groupby("pair")[col].transform("count") == 0
        df.loc[absent, col] = 0.0
    df["base"] = df["pair"].str[:3]
    df["quote"] = df["pair"].str[-3:]
    df["target"] = df[label].astype("float64")
    kc = known_column(label)
    if kc and kc in df.columns:
        df["known"] = df[kc].astype("float64")
    for col in ("pair", "base", "quote"):
        df[col] = df[col].astype(str)
    return df.reset_index(drop=True)
