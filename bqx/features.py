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
import re
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
    import time

    activate(settings)
    args = [str(Path(sys.executable).with_name("dbt"))]
    args += dbt_args(settings, command, select=select, full_refresh=full_refresh)
    env = {**os.environ, **settings.as_env()}
    started = time.time() - 1  # file times may lag the clock a little
    proc = subprocess.run(args, env=env, cwd=DBT_PROJECT)
    if proc.returncode != 0:
        raise FeaturesError(
            f"dbt {command} failed on {settings.warehouse}: "
            + (", ".join(_failed_nodes(settings)) or "see the dbt log above")
        )
    if full_refresh and not select and settings.warehouse == "duckdb":
        # every mart rewrote all its days: a day file left older is a day that
        # is no longer in the warehouse
        assert settings.marts_dir is not None
        for day in settings.marts_dir.glob("*/*.parquet"):
            if day.stat().st_mtime < started:
                day.unlink()


def dbt_args(
    settings: Settings,
    command: str,
    select: str | None = None,
    full_refresh: bool = False,
) -> list[str]:
    """The arguments of ``dbt <command>`` on the configured warehouse."""
    args = [
        command,
        "--project-dir", str(DBT_PROJECT),
        "--profiles-dir", str(DBT_PROJECT),
        "--target", settings.warehouse or "duckdb",
        "--vars", json.dumps(dbt_vars(settings)),
        # artifacts and logs per data dir: concurrent builds never share them
        "--target-path", str(dbt_target(settings)),
        "--log-path", str(settings.data_dir / "dbt_logs"),
    ]  # fmt: skip
    if select:
        args += ["--select", select]
    if full_refresh:
        args.append("--full-refresh")
    return args


def dbt_target(settings: Settings) -> Path:
    """dbt's target folder (manifest, run results) for this deployment's data dir."""
    return settings.data_dir / "dbt_target"


_FAILED = ("error", "fail", "runtime error")  # dbt result statuses of a failure


def _failed_nodes(settings: Settings) -> list[str]:
    """The failing nodes of the last dbt invocation (from run_results.json)."""
    path = dbt_target(settings) / "run_results.json"
    try:
        results = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        return []
    return [
        f"{r['unique_id'].split('.')[-1]} ({r['status']})"
        for r in results
        if r.get("status") in _FAILED
    ]


def fs_yaml(settings: Settings) -> Path:
    """The ``feature_store.yaml`` of the configured deployment."""
    name = "feature_store.yaml"
    if settings.deployment != "local":
        name = f"feature_store.{settings.deployment}.yaml"
    return FEATURE_REPO / name


_VAR = re.compile(r"\$\{(\w+)\}")


def feast_config(settings: Settings) -> dict:
    """Feast's configuration of the deployment, as Feast reads it.

    The deployment's ``feature_store*.yaml`` is the one place where Feast's
    connections take bqx's settings: every value is a ``${BQX_*}`` variable and no
    credential is in the file. This expands it with :meth:`Settings.as_env`
    (without touching ``os.environ``), e.g. for ``bqx doctor`` to open Feast's SQL
    registry exactly as Feast does. The result holds secrets: never print it.
    """
    import yaml

    env = {**os.environ, **settings.as_env()}
    text = fs_yaml(settings).read_text()
    return yaml.safe_load(_VAR.sub(lambda m: env.get(m.group(1), ""), text))


def check_feast_values(settings: Settings) -> None:
    """Refuse values that Feast's config cannot carry intact (names, never values).

    Raises:
        FeaturesError: a Redis password with ``,`` ``"`` or ``\\`` (Feast splits its
            connection string on commas and reads each option as JSON), or a
            PostgreSQL password with a line break.
    """
    if settings.deployment != "production":
        return
    redis_password = settings.redis_password.get_secret_value()
    if any(c in redis_password for c in ',"\\'):
        raise FeaturesError(
            "BQX_REDIS_PASSWORD contains ',' '\"' or '\\': Feast's Redis connection "
            "string cannot carry it; choose a password without them"
        )
    if any(c in settings.pg_password.get_secret_value() for c in "\r\n"):
        raise FeaturesError("BQX_PG_PASSWORD contains a line break")


def registry_error(settings: Settings, exc: BaseException) -> str:
    """One line for a SQL registry that cannot be reached (secrets never shown)."""
    from bqx.secrets import mask, secret_values

    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("(Background", "[SQL"))]
    reason = lines[-1] if lines else type(exc).__name__
    return mask(
        f"Feast SQL registry at {settings.pg_target} (sslmode={settings.pg_sslmode}) "
        f"is unreachable: {reason}; check BQX_PG_SSLMODE, BQX_PG_SSLROOTCERT "
        "and BQX_PG_*",
        secret_values(settings),
    )


def store(settings: Settings | None = None) -> FeatureStore:
    """The Feast ``FeatureStore`` of the configured deployment.

    Raises:
        FeaturesError: the SQL registry (production) cannot be reached.
    """
    from feast import FeatureStore
    from sqlalchemy.exc import OperationalError

    settings = settings or get_settings()
    check_feast_values(settings)
    activate(settings)
    fs = FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=fs_yaml(settings))
    try:
        fs.registry  # noqa: B018 - Feast opens the registry lazily: connect now
    except OperationalError as exc:
        raise FeaturesError(registry_error(settings, exc)) from None
    return fs


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


def export_marts_to_s3(settings: Settings) -> list[str]:
    """Upload the Parquet marts to ``s3://<bucket>/marts/`` (the ``s3`` deployment)."""
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    assert settings.marts_dir is not None
    files = sorted(settings.marts_dir.glob("*/*.parquet"))  # <mart>/<day>.parquet
    if not files:
        raise FeaturesError(
            f"no Parquet marts in {settings.marts_dir}: run `bqx features build` first"
        )
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url or None,
        region_name=settings.s3_region,
    )
    keys = []
    for path in files:
        name = f"{path.parent.name}/{path.name}"
        key = f"marts/{name}"
        try:
            client.upload_file(str(path), settings.s3_bucket, key)
        except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
            raise FeaturesError(
                f"cannot upload {name} to s3://{settings.s3_bucket}/{key}: {exc}"
            ) from None
        keys.append(key)
    return keys


def publish(settings: Settings, full: bool = False, on_gate=None) -> list[str]:
    """Apply the definitions and load the newest rows into the online store.

    The feature suites of the quality gate run first (only the new range on an
    incremental publish); a failing critical expectation raises
    ``QualityGateError`` and nothing is published. The first publish of a view (or
    ``full=True``) materializes its whole history (the online store keeps only the
    latest row per pair); later ones are incremental from the last materialized time,
    unless the online store is empty (e.g. a Redis restarted without persistence):
    then everything is materialized again.

    Returns:
        The names of the views materialized.
    """
    from expectations.gate import require_pass

    check_online_store(settings)
    # a restarted (empty) online store gets everything again, not just the new rows
    full = full or online_store_empty(settings)
    fs = apply(settings)
    since = None if full else _last_published(fs)
    # the quality gate: a failing critical expectation stops the publication
    report = require_pass(settings, "features", since=since)
    if on_gate is not None:
        on_gate(report)
    if settings.deployment == "s3":
        export_marts_to_s3(settings)
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


def _last_published(fs: FeatureStore):
    """The earliest of the online views' last materialized times (None: never)."""
    ends = []
    for view in fs.list_feature_views():
        if not view.online:
            continue
        if not view.materialization_intervals:
            return None
        ends.append(max(end for _, end in view.materialization_intervals))
    return min(ends) if ends else None


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


def _redis_client(settings: Settings, timeout: float):
    """A client of the online store's Redis: short timeouts, no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        db=settings.redis_db,
        password=settings.redis_password.get_secret_value() or None,
        ssl=settings.redis_ssl,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def ping_redis(settings: Settings, timeout: float = 0.5) -> None:
    """``PING`` the configured Redis with a short timeout and no retries.

    Feast's Redis client retries with backoff for several seconds; a down Redis
    must instead give a clear error at once.

    Raises:
        FeaturesError: naming Redis and its address.
    """
    import redis

    client = _redis_client(settings, timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise FeaturesError(
            f"Redis at {settings.redis_host}:{settings.redis_port} is unreachable "
            f"(online store {settings.redis_target}): {exc}"
        ) from None
    finally:
        client.close()


def online_store_empty(settings: Settings, timeout: float = 0.5) -> bool:
    """True when the online store holds nothing: the Redis db has no key
    (production), or the SQLite file does not exist (local, s3)."""
    if settings.deployment != "production":
        return not (settings.data_dir / "feast" / "online.db").exists()
    client = _redis_client(settings, timeout)
    try:
        return client.dbsize() == 0
    finally:
        client.close()


def check_online_store(settings: Settings, timeout: float = 0.5) -> None:
    """Fail fast when the online store of the deployment (Redis) is unreachable."""
    if settings.deployment == "production":
        ping_redis(settings, timeout)


def online_values(
    settings: Settings, pairs: Sequence[str] | None = None, service: str = "online_v1"
) -> pd.DataFrame:
    """The latest online features of each pair, with the row's event time.

    Columns: ``pair``, ``event_timestamp`` (the bar end the values belong to),
    ``age_minutes`` and ``fresh`` (age within the views' TTL), then the features.
    A pair whose row is older than the TTL (a closed market) is served with
    ``fresh = False`` instead of passing for current values.
    """
    check_online_store(settings)
    fs = store(settings)
    pairs = list(pairs or settings.pair_list)
    feature_service = fs.get_feature_service(service)
    response = fs.get_online_features(
        features=feature_service, entity_rows=[{"pair": p} for p in pairs]
    )
    raw = response.to_df(include_event_timestamps=True)
    ts_cols = [c for c in raw.columns if c.endswith("__ts")]
    frame = raw.drop(columns=ts_cols)
    # Feast gives each feature's event time in epoch seconds (0 for the entity key)
    stamps = raw[[c for c in ts_cols if c != "pair__ts"]].apply(
        lambda s: pd.to_datetime(pd.to_numeric(s), unit="s", utc=True)
    )
    frame.insert(1, "event_timestamp", stamps.max(axis=1))
    age = (pd.Timestamp.now(tz="UTC") - frame["event_timestamp"]).dt.total_seconds() / 60
    ttl = min(
        fs.get_feature_view(p.name).ttl.total_seconds() / 60
        for p in feature_service.feature_view_projections
    )
    frame.insert(2, "age_minutes", age.round(1))
    frame.insert(3, "fresh", age <= ttl)
    return frame


def latest_rows(settings: Settings, mart: str) -> pd.DataFrame:
    """The newest row of each pair in one mart (what the online store should hold)."""
    from bqx.warehouse import open_warehouse

    with open_warehouse(settings, read_only=True) as wh:
        return _latest_rows(wh, settings, mart)


def _latest_rows(wh, settings: Settings, mart: str) -> pd.DataFrame:
    if settings.warehouse == "duckdb":
        sql = (
            f"select * from marts.{mart} qualify row_number() over "
            "(partition by pair order by event_timestamp desc) = 1"
        )
        frame = wh.query_df(sql)
    else:
        # one walk down the (pair, event_timestamp) index per pair, not a scan
        sql = (
            "select m.* from unnest(?::text[]) as p(pair) cross join lateral "
            f"(select * from marts.{mart} as t where t.pair = p.pair "
            "order by t.event_timestamp desc limit 1) as m"
        )
        frame = wh.query_df(sql, [list(settings.pair_list)])
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    return frame


def push_latest(settings: Settings, fs: FeatureStore | None = None) -> dict[str, int]:
    """Write only the newest row per pair of every online view to the online store.

    The push path for fresh bars: after an incremental build, the online store is
    updated without a full materialization.

    Returns:
        Rows written per view.
    """
    from bqx.warehouse import open_warehouse

    check_online_store(settings)
    fs = fs or store(settings)
    written = {}
    views = [v for v in fs.list_feature_views() if v.online]
    with open_warehouse(settings, read_only=True) as wh:
        frames = {v.name: _latest_rows(wh, settings, v.tags["mart"]) for v in views}
    for view in views:
        frame = frames[view.name]
        columns = ["pair", "event_timestamp"] + [f.name for f in view.features]
        fs.write_to_online_store(view.name, frame[columns])
        written[view.name] = len(frame)
    return written


def settle_heap() -> None:
    """Take what a long-running process has loaded so far (modules, dbt's parsed
    project, Feast's registry) out of the garbage collector's full passes.

    ``gc.freeze()`` after a last collection: the objects stay alive, but a full
    collection no longer walks them. Measured in `bqx features follow` on
    PostgreSQL: a full collection paused the refresh for 0.40-0.43 s about every
    fifth minute (both dbt threads wait on it); after the freeze, 8-60 ms.
    """
    import gc

    gc.collect()
    gc.freeze()


def _cheap_behavior_flag_source() -> None:
    """Make dbt-common name the module of a behaviour flag without ``inspect.stack()``.

    ``BehaviorFlagRendered.__init__`` evaluates ``_default_source()`` for every
    flag of every adapter dbt creates, i.e. at each in-process invocation, and
    that reads the source file of every frame on the stack and scans
    ``sys.modules`` for each frame it cannot place. In `bqx features follow` this
    was about a quarter of the process's samples (py-spy), and a refresh slowed
    from one minute to the next. The same name comes from the frames' globals.
    """
    import sys

    from dbt_common import behavior_flags

    def source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__:
                return name
            frame = frame.f_back
        return "Unknown"

    behavior_flags.BehaviorFlagRendered._default_source = staticmethod(source)


def _release_duckdb() -> None:
    """Close dbt-duckdb's database after an in-process invocation.

    dbt-duckdb keeps its connection open for the life of the process
    (``keep_open``), which would lock the warehouse file against every other
    process (loads, ``bqx validate``). Closing it checkpoints the write-ahead log;
    the next invocation opens the file again.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        env.close()


class WarmDbt:
    """dbt kept loaded in a long-running process: the project is parsed once and
    each :meth:`run` is an in-process invocation (``dbtRunner(manifest=...)``),
    so a refresh pays neither dbt's imports nor its parse (~2.5 s), nor writes
    manifest.json / run_results.json. On DuckDB the warehouse file is released
    after each run (:func:`_release_duckdb`).

    The project's views (the staging of the bars) are created once, when it
    starts: they depend on the project alone, which cannot change under a
    running process, so every :meth:`run` leaves them out. (When the first
    refresh created them, it took 0.2 s longer than the next ones: the views
    themselves and dbt's first invocation in the process.)

    What dbt keeps loaded (the parsed project, then what its first runs build)
    is taken out of the garbage collector's full passes (:func:`settle_heap`):
    a full pass over it took 0.23-0.29 s, in about every other refresh of a
    day's bars.

    Raises:
        FeaturesError: the project does not parse, or its views fail.
    """

    VIEWS = "config.materialized:view"

    def __init__(self, settings: Settings):
        from dbt.cli.main import dbtRunner

        activate(settings)
        self.settings = settings
        _cheap_behavior_flag_source()
        parsed = dbtRunner().invoke(dbt_args(settings, "parse") + ["--quiet"])
        if not parsed.success:
            raise FeaturesError(f"dbt parse failed: {parsed.exception}")
        self._runner = dbtRunner(manifest=parsed.result)
        self._settled = False  # the heap settled again after the first refresh
        self._invoke(select=self.VIEWS)
        settle_heap()

    def run(self, select: str | None = None, exclude: str | None = None) -> dict[str, float]:
        """The incremental ``dbt run`` of the selected models (default all but
        the views, made when this started).

        Returns the seconds each node took.

        Raises:
            FeaturesError: dbt failed; the message names the failing nodes.
        """
        nodes = self._invoke(select=select, exclude=" ".join(filter(None, [exclude, self.VIEWS])))
        if not self._settled:  # dbt's materializations are loaded now
            settle_heap()
            self._settled = True
        return nodes

    def _invoke(self, select: str | None, exclude: str | None = None) -> dict[str, float]:
        # the profile's threads (2): a minute's tail is small SQL beside dbt's
        # own Python per model, which holds the GIL; 4 threads on 2 cores gave a
        # freshness p99 of 2.23 s against 1.70 s (benchmarks/bench_feast.py)
        args = dbt_args(self.settings, "run", select=select)
        if exclude:
            args += ["--exclude", exclude]
        if "DBT_LOG_LEVEL_FILE" not in os.environ:
            # dbt's debug file log writes every query of every model each minute,
            # from every thread through one locked handler: about a quarter of
            # the Python time of a refresh (sampled with py-spy)
            args += ["--log-level-file", "info"]
        try:
            result = self._runner.invoke(args + ["--quiet", "--no-write-json"])
        finally:
            if self.settings.warehouse == "duckdb":
                _release_duckdb()
        if not result.success:
            failed = [
                f"{r.node.name} ({getattr(r.status, 'value', r.status)})"
                for r in getattr(result.result, "results", None) or []
                if getattr(r.status, "value", r.status) in _FAILED
            ]
            raise FeaturesError(
                f"dbt run failed on {self.settings.warehouse}: "
                + (", ".join(failed) or str(result.exception))
            )
        return {r.node.name: r.execution_time for r in result.result.results}


class FeatureRefresher:
    """New bars -> incremental ``dbt run`` -> newest rows pushed to the online store.

    For a long-running process (``bqx features follow``): dbt runs in this process
    from a project parsed once (:class:`WarmDbt`), so a refresh does not pay dbt's
    import and parse again; Feast's store and registry are opened once. On DuckDB
    the warehouse file is released after each dbt run, so loads can write between
    refreshes.

    A refresh runs the marts of the online views (and what they depend on) first,
    pushes their newest rows, and only then the other models (the labels, which
    are never served online), so a new bar is online without waiting for them.
    The views are created once, when it starts (:class:`WarmDbt`).
    """

    def __init__(self, settings: Settings):
        check_online_store(settings)
        self.settings = settings
        self._dbt = WarmDbt(settings)  # also exports the settings (activate)
        self.fs = store(settings)
        self._seen: tuple | None = None  # (newest ingested_at, newest bar)
        # dbt selector of what the online store reads: +<mart> of each online view
        self._online = " ".join(
            sorted({f"+{v.tags['mart']}" for v in self.fs.list_feature_views() if v.online})
        )
        self._refreshed = False
        self._listen = None  # PostgreSQL: waits for a load's notification (wait)
        self.timings: dict = {}  # of the last refresh (see refresh)

    def new_bars(self) -> bool:
        """True when bars were stored or changed since the last call.

        Looks at the bars from a day before the newest one seen (the current
        partition on PostgreSQL), so a poll stays cheap however long the history.
        """
        from bqx.warehouse import open_warehouse

        self._listening()  # before the look: a load committed after it wakes wait()
        sql = "select max(ingested_at), max(bar_start) from raw.candles_m1"
        params: list = []
        if self._seen is not None and self._seen[1] is not None:
            sql += " where bar_start >= ?"
            params = [pd.Timestamp(self._seen[1]) - pd.Timedelta(days=1)]
        with open_warehouse(self.settings, read_only=True) as wh:
            row = tuple(wh.query_df(sql, params).iloc[0])
        changed = self._seen is None or row[0] != self._seen[0]
        self._seen = row
        return changed

    def wait(self, timeout: float) -> None:
        """Until bars may have landed: on PostgreSQL, until a load's notification
        (every load that stores or changes bars sends one at commit, see
        :func:`bqx.warehouse.listen_for_candles`) or ``timeout`` seconds; on DuckDB
        (one process per file, no notifications) ``timeout`` seconds. A lost
        listening connection is reopened at the next wait.
        """
        import time

        import psycopg

        listen = self._listening()
        if listen is None:
            time.sleep(timeout)
            return
        try:
            listen(timeout)
        except psycopg.OperationalError:  # reopened by the next look
            listen.close()
            self._listen = None
            time.sleep(timeout)

    def _listening(self):
        """The PostgreSQL notification listener, opened if needed (None on DuckDB
        or while the server cannot be reached)."""
        if self.settings.warehouse != "postgres":
            return None
        if self._listen is None:
            import psycopg

            from bqx.warehouse import listen_for_candles

            try:
                self._listen = listen_for_candles(self.settings)
            except psycopg.OperationalError:
                return None
        return self._listen

    @property
    def newest_bar(self):
        """The newest bar start seen by :meth:`new_bars` (None before any)."""
        return self._seen[1] if self._seen else None

    def push(self) -> dict[str, int]:
        """The newest row of each pair to the online store; rows written per view."""
        return push_latest(self.settings, fs=self.fs)

    def refresh(self) -> dict[str, int]:
        """Run the incremental models, push the newest rows; rows written per view.

        The online marts, the push, then the other models (see the class).
        ``self.timings`` then holds the seconds of each step (``online``: from the
        start to the push done) and of each dbt node (``nodes``).
        """
        import time

        t0 = time.perf_counter()
        split = bool(self._online)  # no online view (registry not applied): one run
        nodes = self._dbt.run(select=self._online if split else None)
        t1 = time.perf_counter()
        written = self.push()
        t2 = time.perf_counter()
        if split:
            nodes |= self._dbt.run(exclude=self._online)
        if not self._refreshed:  # dbt's adapter and Feast's stores are loaded now
            settle_heap()
        self._refreshed = True
        self.timings = {
            "online_models": t1 - t0,
            "push": t2 - t1,
            "online": t2 - t0,
            "other_models": time.perf_counter() - t2,
            "nodes": nodes,
        }
        return written


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 6566,
    registry_ttl: int | None = None,
) -> None:
    """Run Feast's HTTP feature server (``/get-online-features``) until stopped.

    Feast's app, with bqx's fast ``/get-online-features`` (bqx/feature_server.py);
    the registry is reloaded every ``registry_ttl`` seconds (default: the
    registry's ``cache_ttl_seconds``).
    """
    from bqx import feature_server

    check_online_store(settings)
    feature_server.run(
        store(settings), host=host, port=port, registry_ttl_sec=registry_ttl
    )


def save_training_set(
    frame: pd.DataFrame, path: Path, service: str, start, end
) -> Path:
    """Save a training frame as Parquet with its metadata (service, range, git rev)."""
    import subprocess

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        rev = ""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {
        "bqx.feature_service": service,
        "bqx.start": str(start),
        "bqx.end": str(end),
        "bqx.git_revision": rev or "unknown",
        "bqx.rows": str(len(frame)),
    }
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **meta})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
