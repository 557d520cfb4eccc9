"""``bqx doctor``: check every configured component and say what to fix.

Each check gives a :class:`Check` (component, target with secrets masked, status,
latency, hint). Status is ``ok``, ``warn`` (works, but something is missing, e.g.
nothing published yet), ``fail`` or ``skip`` (not configured for this deployment).
A failed *required* check makes :func:`failed` true (the CLI then exits 1).

* warehouse: reachable (``select 1``) and its ``ops`` schema version current;
* redis (production): ``PING`` with a 0.5 s timeout and no retries;
* feast registry: the registry file (local, s3), or the SQL registry (production)
  reached with Feast's own connection settings (``bqx.features.feast_config``);
* s3: ``head_bucket`` of ``BQX_S3_BUCKET`` (required on deployment s3, optional
  elsewhere when ``BQX_S3_ENDPOINT_URL`` is set);
* oanda (when a token is set): ``GET /v3/accounts`` with the token against the
  configured environment (the candles endpoint where ``/v3/accounts`` is not served).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from bqx.runs import OPS_SCHEMA_VERSION, ensure_ops_schema, schema_version
from bqx.secrets import mask, secret_values
from bqx.settings import Settings

TIMEOUT_S = 0.5
HTTP_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 3


@dataclass
class Check:
    """The outcome of one component check."""

    component: str
    target: str
    status: str
    latency_ms: float | None = None
    hint: str = ""
    required: bool = True

    @property
    def failed(self) -> bool:
        return self.required and self.status == "fail"


def _short(exc: BaseException) -> str:
    """One line naming the error (the last line of multi-line driver messages)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def warehouse_target(settings: Settings) -> str:
    """Where the warehouse is (no secrets)."""
    if settings.warehouse == "postgres":
        return settings.pg_target + f"?sslmode={settings.pg_sslmode}"
    return f"duckdb:{settings.duckdb_path}"


def _pg_reachable(settings: Settings) -> None:
    """Fail fast when PostgreSQL does not answer (the pool would wait for it)."""
    import psycopg

    try:
        psycopg.connect(settings.pg_dsn, connect_timeout=CONNECT_TIMEOUT_S).close()
    except psycopg.OperationalError as exc:
        raise RuntimeError(
            f"PostgreSQL at {settings.pg_host}:{settings.pg_port} is unreachable: "
            f"{_short(exc)}"
        ) from None


def check_warehouse(settings: Settings, init: bool = False) -> Check:
    """Warehouse reachable and its ``ops`` schema at :data:`OPS_SCHEMA_VERSION`."""
    from bqx.warehouse import open_warehouse

    def probe() -> tuple[str, str]:
        if settings.warehouse == "postgres":
            _pg_reachable(settings)
        with open_warehouse(settings) as wh:
            wh.query_df("select 1 as one")
            if init:
                wh.ensure_schema()
                ensure_ops_schema(wh)
            version = schema_version(wh)
        if version is None:
            return "warn", (
                "ops schema not created yet: run `bqx doctor --init` "
                "(or any pipeline command)"
            )
        if version < OPS_SCHEMA_VERSION:
            return "fail", (
                f"ops schema v{version} is older than v{OPS_SCHEMA_VERSION}: "
                "run `bqx doctor --init` to upgrade"
            )
        if version > OPS_SCHEMA_VERSION:
            return "fail", (
                f"ops schema v{version} is newer than this bqx "
                f"(v{OPS_SCHEMA_VERSION}): upgrade bqx"
            )
        return "ok", f"schema v{version}"

    hint_down = (
        "start PostgreSQL (`docker compose up -d postgres`) and check BQX_PG_*"
        if settings.warehouse == "postgres"
        else "check BQX_DUCKDB_PATH (is another process writing the file?)"
    )
    return _run("warehouse", warehouse_target(settings), probe, hint_down, True)


def check_redis(settings: Settings) -> Check:
    """Redis online store answers ``PING`` within :data:`TIMEOUT_S` (production)."""
    target = settings.redis_target
    if settings.deployment != "production":
        return Check("redis", target, "skip", hint="not used by this deployment",
                     required=False)  # fmt: skip

    def probe() -> tuple[str, str]:
        from bqx.features import FeaturesError, ping_redis

        try:
            ping_redis(settings, TIMEOUT_S)
        except FeaturesError as exc:
            raise RuntimeError(str(exc)) from None
        return "ok", ""

    hint = (
        f"start Redis at {settings.redis_host}:{settings.redis_port} "
        "(`docker compose up -d redis`) and check BQX_REDIS_*"
    )
    return _run("redis", target, probe, hint, True)


def check_registry(settings: Settings) -> Check:
    """The Feast registry of the deployment exists and is readable."""
    if settings.deployment == "production":
        return _sql_registry(settings)
    path = settings.data_dir / "feast" / "registry.db"

    def probe() -> tuple[str, str]:
        if not path.exists():
            return "warn", "no registry yet: run `bqx features publish`"
        if path.stat().st_size == 0:
            return "fail", f"{path} is empty: rerun `bqx features publish`"
        with path.open("rb") as fh:
            fh.read(1)
        return "ok", ""

    return _run("feast registry", f"file:{path}", probe, "check BQX_DATA_DIR", True)


def _sql_registry(settings: Settings) -> Check:
    """Feast's SQL registry, opened with Feast's own engine settings (sslmode, CA
    file, pool, statement timeout from ``feature_store.production.yaml``)."""
    from sqlalchemy import create_engine, text

    from bqx.features import check_feast_values, feast_config

    def probe() -> tuple[str, str]:
        check_feast_values(settings)
        registry = feast_config(settings)["registry"]
        kwargs = dict(registry.get("sqlalchemy_config_kwargs") or {})
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        engine = create_engine(registry["path"], connect_args=connect_args, **kwargs)
        try:
            with engine.connect() as conn:
                found = conn.execute(
                    text(
                        "select count(*) from information_schema.tables "
                        "where table_name = 'feature_views'"
                    )
                ).scalar_one()
                if not found:
                    return "warn", "no registry tables yet: run `bqx features publish`"
                n = conn.execute(
                    text("select count(*) from feature_views where project_id = 'bqx'")
                ).scalar_one()
        except Exception as exc:  # noqa: BLE001 - reported as the check's result
            from bqx.features import registry_error

            raise RuntimeError(registry_error(settings, exc)) from None
        finally:
            engine.dispose()
        if n == 0:
            return "warn", "no bqx feature views yet: run `bqx features publish`"
        return "ok", f"{n} feature views"

    target = settings.pg_target + f"?sslmode={settings.pg_sslmode} (feast sql registry)"
    return _run(
        "feast registry", target, probe, "see feature_store.production.yaml", True
    )


def check_s3(settings: Settings) -> Check:
    """The bucket answers ``head_bucket``: required on deployment s3; elsewhere
    checked, not required, when an endpoint is configured (the laptop copy's MinIO,
    where training runs may go with ``--storage s3://...``)."""
    endpoint = settings.s3_endpoint_url
    target = f"s3://{settings.s3_bucket}" + (f" at {endpoint}" if endpoint else "")
    required = settings.deployment == "s3"
    if not required and not endpoint:
        return Check("s3", target, "skip", hint="not used by this deployment",
                     required=False)  # fmt: skip

    def probe() -> tuple[str, str]:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=settings.s3_region,
            config=Config(
                connect_timeout=2, read_timeout=2, retries={"max_attempts": 1}
            ),
        )
        client.head_bucket(Bucket=settings.s3_bucket)
        return "ok", ""

    hint = (
        "check BQX_S3_BUCKET/BQX_S3_ENDPOINT_URL and the AWS_* credentials "
        "(`docker compose up -d minio minio-init` creates the bucket)"
    )
    if not required:
        hint += "; optional on this deployment"
    return _run("s3", target, probe, hint, required)


def oanda_api_url(settings: Settings) -> str:
    """The REST base URL of the configured OANDA environment."""
    if settings.oanda_env == "custom":
        return settings.oanda_url.rstrip("/")
    from oandapyV20.oandapyV20 import TRADING_ENVIRONMENTS

    return TRADING_ENVIRONMENTS[settings.oanda_env]["api"]


def check_oanda(settings: Settings) -> Check:
    """The OANDA token is accepted by the configured environment."""
    token = settings.oanda_token.get_secret_value()
    try:
        url = oanda_api_url(settings)
    except KeyError:
        url = f"<unknown environment {settings.oanda_env}>"
    target = f"{url} ({settings.oanda_env})"
    if not token:
        return Check("oanda", target, "skip",
                     hint="no BQX_OANDA_TOKEN: live ingestion disabled",
                     required=False)  # fmt: skip

    def probe() -> tuple[str, str]:
        import requests

        if not url.startswith(("http://", "https://")):
            return "fail", "BQX_OANDA_URL must be an http(s) URL (BQX_OANDA_ENV=custom)"
        headers = {"Authorization": f"Bearer {token}"}
        with requests.Session() as http:
            answer = http.get(f"{url}/v3/accounts", headers=headers,
                              timeout=HTTP_TIMEOUT_S)  # fmt: skip
            if answer.status_code == 404:  # e.g. the local fake
                answer = http.get(
                    f"{url}/v3/instruments/EUR_USD/candles",
                    params={"count": "1", "granularity": "M1", "price": "M"},
                    headers=headers,
                    timeout=HTTP_TIMEOUT_S,
                )
        if answer.status_code == 401:
            return "fail", (
                f"token rejected (HTTP 401) by the {settings.oanda_env} "
                "environment: check BQX_OANDA_TOKEN and BQX_OANDA_ENV"
            )
        if answer.status_code != 200:
            return "fail", f"HTTP {answer.status_code} from {url}"
        return "ok", "token accepted"

    hint = "check BQX_OANDA_ENV / BQX_OANDA_URL and the network"
    return _run("oanda", target, probe, hint, True)


def _run(
    component: str,
    target: str,
    probe: Callable[[], tuple[str, str]],
    hint_down: str,
    required: bool,
) -> Check:
    t0 = time.perf_counter()
    try:
        status, hint = probe()
    except Exception as exc:  # noqa: BLE001 - any failure is the check's result
        status, hint = "fail", f"{_short(exc)}; {hint_down}"
    latency = (time.perf_counter() - t0) * 1000
    return Check(component, target, status, latency, hint, required)


def run_checks(settings: Settings, init: bool = False) -> list[Check]:
    """Every check for the configured deployment, secrets masked in their text."""
    checks = [
        check_warehouse(settings, init=init),
        check_redis(settings),
        check_registry(settings),
        check_s3(settings),
        check_oanda(settings),
    ]
    secrets = secret_values(settings)
    for check in checks:
        check.target = mask(check.target, secrets)
        check.hint = mask(check.hint, secrets)
    return checks


def failed(checks: list[Check]) -> list[Check]:
    """The required checks that failed."""
    return [c for c in checks if c.failed]


STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def table(checks: list[Check]):
    """A rich table: component, target, status, latency, hint."""
    from rich.table import Table

    out = Table("component", "target", "status", "latency", "hint", title="bqx doctor")
    for c in checks:
        latency = "-" if c.latency_ms is None else f"{c.latency_ms:.0f} ms"
        style = STYLE.get(c.status, "")
        out.add_row(c.component, c.target, f"[{style}]{c.status}[/]", latency, c.hint)
    return out
