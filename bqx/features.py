"""Feature pipeline glue: dbt builds the marts, Feast registers and serves them.

* :func:`build` runs ``dbt build`` (in process) on the configured target.
* :func:`store` opens the Feast ``FeatureStore`` of the configured deployment.
* :func:`publish` applies the definitions of ``feature_repo/`` and materializes the
  latest rows into the online store.
* :func:`training_frame` gives a point-in-time training frame.

Feast and dbt are imported lazily (``import feast`` alone costs seconds).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import pandas as pd

from bqx.settings import Settings, get_settings
from bqx.timeutil import utc

if TYPE_CHECKING:
    from feast import FeatureStore

ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT = ROOT / "dbt_project"
FEATURE_REPO = ROOT / "feature_repo"
_REPO_MODULES = ("entities", "families", "sources", "services", "views")


class FeaturesError(RuntimeError):
    """A feature build or publish problem, with a message fit for the user."""


def activate(settings: Settings) -> None:
    """Export the settings as ``BQX_*`` variables for dbt's ``env_var`` and Feast.

    Also makes :func:`bqx.settings.get_settings` return these settings, so the
    Feast definitions in ``feature_repo/`` (which read it) see the same values.
    """
    os.environ.update(settings.as_env())
    get_settings.cache_clear()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    assert settings.marts_dir is not None
    settings.marts_dir.mkdir(parents=True, exist_ok=True)


def dbt_vars(settings: Settings) -> dict:
    """dbt ``--vars`` taken from the settings (the universe)."""
    return {"pairs": settings.pair_list}


def build(
    settings: Settings,
    select: str | None = None,
    full_refresh: bool = False,
    command: str = "build",
) -> None:
    """Run ``dbt <command>`` (default ``build``: models and their tests).

    dbt runs in a child process: dbt-duckdb keeps its connection open for the life
    of the process, which would lock the warehouse file for everyone else.

    Raises:
        FeaturesError: dbt failed; the message names the failing nodes.
    """
    import subprocess

    activate(settings)
    args = [
        str(Path(sys.executable).with_name("dbt")),
        command,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target", settings.warehouse or "duckdb",
        "--vars", json.dumps(dbt_vars(settings)),
    ]  # fmt: skip
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    env = {**os.environ, **settings.as_env()}
    proc = subprocess.run(args, env=env, cwd=DBT_PROJECT)
    if proc.returncode != 0:
        raise FeaturesError(
            f"dbt {command} failed on {settings.warehouse}: "
            + (", ".join(_failed_nodes()) or "see the dbt log above")
        )


def _failed_nodes() -> list[str]:
    """The failing nodes of the last dbt invocation (from run_results.json)."""
    path = DBT_PROJECT / "target" / "run_results.json"
    try:
        results = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []
    return [
        f"{r['unique_id'].split('.')[-1]} ({r['status']})"
        for r in results
        if r.get("status") in ("error", "fail", "runtime error")
    ]


def fs_yaml(settings: Settings) -> Path:
    """The ``feature_store.yaml`` of the configured deployment."""
    name = "feature_store.yaml"
    if settings.deployment != "local":
        name = f"feature_store.{settings.deployment}.yaml"
    return FEATURE_REPO / name


def store(settings: Settings | None = None) -> FeatureStore:
    """The Feast ``FeatureStore`` of the configured deployment."""
    from feast import FeatureStore

    settings = settings or get_settings()
    activate(settings)
    return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=fs_yaml(settings))


def _repo_objects() -> list:
    """Import ``feature_repo/`` afresh (its sources depend on the settings)."""
    from feast.repo_operations import parse_repo

    for name in list(sys.modules):
        if name.split(".")[0] in _REPO_MODULES:
            del sys.modules[name]
    if str(FEATURE_REPO) not in sys.path:
        sys.path.insert(0, str(FEATURE_REPO))
    cwd = os.getcwd()
    os.chdir(FEATURE_REPO)  # feast names the modules relative to the cwd
    try:
        repo = parse_repo(FEATURE_REPO)
    finally:
        os.chdir(cwd)
    return [
        *repo.entities,
        *repo.data_sources,
        *repo.feature_views,
        *repo.feature_services,
    ]


def apply(settings: Settings) -> FeatureStore:
    """``feast apply`` of ``feature_repo/`` for the configured deployment."""
    fs = store(settings)
    fs.apply(_repo_objects())
    return fs


def publish(settings: Settings, full: bool = False) -> list[str]:
    """Apply the definitions and load the newest rows into the online store.

    The first publish of a view (or ``full=True``) materializes its whole history
    (the online store keeps only the latest row per pair); later ones are
    incremental from the last materialized time.

    Returns:
        The names of the views materialized.
    """
    fs = apply(settings)
    now = datetime.now(timezone.utc)
    names = []
    for view in fs.list_feature_views():
        if not view.online:
            continue
        if full or not view.materialization_intervals:
            fs.materialize(datetime(2000, 1, 1, tzinfo=timezone.utc), now, [view.name])
        else:
            fs.materialize_incremental(now, [view.name])
        names.append(view.name)
    return names


def entity_frame(
    pairs: Sequence[str], start, end, every: str = "1min"
) -> pd.DataFrame:
    """Entity rows (pair, event_timestamp) on a regular grid in ``[start, end]``."""
    times = pd.date_range(utc(start), utc(end), freq=every)
    return pd.DataFrame(
        {
            "pair": [p for p in pairs for _ in range(len(times))],
            "event_timestamp": list(times) * len(pairs),
        }
    )


def training_frame(
    pairs: Sequence[str],
    start,
    end,
    service: str = "tft_v1",
    every: str = "1min",
    settings: Settings | None = None,
    entity_df: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """A point-in-time training frame from ``get_historical_features``.

    Each row (pair, t) gets the features of the last bar that ENDED at or before
    ``t`` (features are stamped with the bar end).
    """
    from bqx.pairs import resolve_pairs

    settings = settings or get_settings()
    pairs = resolve_pairs(pairs)
    fs = store(settings)
    if entity_df is None:
        entity_df = entity_frame(pairs, start, end, every)
    job = fs.get_historical_features(
        entity_df=entity_df, features=fs.get_feature_service(service)
    )
    return job.to_df().sort_values(["pair", "event_timestamp"], ignore_index=True)


def online_values(
    settings: Settings, pairs: Sequence[str] | None = None, service: str = "online_v1"
) -> pd.DataFrame:
    """The latest online features of each pair (one row per pair)."""
    fs = store(settings)
    pairs = list(pairs or settings.pair_list)
    response = fs.get_online_features(
        features=fs.get_feature_service(service),
        entity_rows=[{"pair": p} for p in pairs],
    )
    return response.to_df()
