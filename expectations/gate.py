"""The data-quality gate: run the suites with Great Expectations, report, block.

* :func:`validate` runs the ``raw_candles`` suite (target ``raw``) or one suite per
  mart of schema ``marts`` (target ``features``) on the warehouse through a GX SQL
  datasource (DuckDB or PostgreSQL): each rule is a query the database answers, no
  table is loaded into pandas. ``since`` restricts the batch to the new rows.
  Keys of the failing rows go to ``quality.failures`` (idempotent).
* :func:`require_pass` raises :class:`QualityGateError` when a ``critical`` rule
  fails, naming the suite, the expectation and example rows.
* :func:`build_data_docs` renders the GX Data Docs (HTML) of the stored results.

The GX project lives in ``$BQX_DATA_DIR/quality/gx`` (a file context); the suites are
rebuilt from code (:mod:`expectations.rules`) on every run, so git holds them.
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from bqx.settings import Settings
from expectations.rules import (
    BARS_MODEL,
    GateConfig,
    Rule,
    Scope,
    feature_rules,
    raw_rules,
)

if TYPE_CHECKING:
    from great_expectations.data_context import AbstractDataContext

Target = Literal["raw", "features"]
RAW_SUITE = "raw_candles"
RAW_TABLE = "raw.candles_m1"
MARTS_SCHEMA = "marts"
DATASOURCE = "bqx_warehouse"
DOCS_SITE = "bqx"
EXAMPLES = 5

_FAILURES_DDL = """
create schema if not exists quality;
create table if not exists quality.failures (
    suite text not null,
    expectation text not null,
    severity text not null,
    pair text not null,
    bar_time timestamptz not null,
    detail text,
    first_seen_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    primary key (suite, expectation, pair, bar_time)
);
"""


class GateError(RuntimeError):
    """The gate cannot run (nothing to validate, bad argument)."""


class QualityGateError(GateError):
    """A critical expectation failed: publication must not go ahead."""


@dataclass
class Outcome:
    """The result of one expectation on one batch."""

    suite: str
    expectation: str
    severity: str
    success: bool
    unexpected_count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    error: str | None = None

    def example_text(self, limit: int = 3) -> str:
        """The first offending rows as ``pair time k=v ...``."""
        return "; ".join(_row_text(r) for r in self.examples[:limit])


@dataclass
class GateReport:
    """What one validation found, one :class:`Outcome` per expectation."""

    target: str
    since: pd.Timestamp | None
    outcomes: list[Outcome]
    failures_written: int = 0

    @property
    def suites(self) -> list[str]:
        return sorted({o.suite for o in self.outcomes})

    @property
    def critical_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    @property
    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    @property
    def passed(self) -> bool:
        """True when no critical expectation failed (warnings do not block)."""
        return not self.critical_failures

    def outcome(self, suite: str, expectation: str) -> Outcome:
        """The outcome of one expectation (KeyError when it did not run)."""
        for o in self.outcomes:
            if o.suite == suite and o.expectation == expectation:
                return o
        raise KeyError(f"{suite}.{expectation}")

    def failure_message(self) -> str:
        """The critical failures: suite, expectation, count and example rows."""
        parts = []
        for o in self.critical_failures:
            what = o.error or f"{o.unexpected_count} rows, e.g. {o.example_text()}"
            parts.append(f"{o.suite}.{o.expectation} ({o.description}): {what}")
        return (
            f"quality gate failed on {self.target}: {len(parts)} critical "
            "expectation(s) failed: " + " | ".join(parts)
        )


def _row_text(row: dict[str, Any]) -> str:
    at = row.get("bar_time")
    when = pd.Timestamp(at).isoformat() if at is not None else "?"
    rest = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("pair", "bar_time"))
    return f"{row.get('pair')} {when} {rest}".strip()


def _since(since: Any) -> pd.Timestamp | None:
    if since is None:
        return None
    try:
        ts = pd.Timestamp(since)
    except (ValueError, TypeError) as exc:
        raise GateError(f"bad --since value {since!r}: {exc}") from None
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _ts(at: pd.Timestamp) -> str:
    return f"cast('{at.isoformat()}' as timestamp with time zone)"


def _batch_query(table: str, time_column: str, since: pd.Timestamp | None) -> str:
    query = f"select * from {table}"
    if since is not None:
        query += f" where {time_column} >= {_ts(since)}"
    return query


def _batch_text(rule: Rule, query: str) -> str:
    """``{batch}`` as GX substitutes it: a rule that joins aliases it itself."""
    if re.search(r"\bjoin\b", rule.sql, re.IGNORECASE):
        return f"({query})"
    return f"({query}) as batch"


def _connection_string(settings: Settings) -> str:
    if settings.warehouse == "postgres":
        dsn = settings.pg_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
        if settings.pg_password.get_secret_value():
            # GX stores its datasources in a yml: keep the secret out of it. GX
            # substitutes ${BQX_PG_PASSWORD} from the environment, where
            # bqx.features.activate exports the settings (as for dbt and Feast).
            from urllib.parse import quote

            from bqx.features import activate

            activate(settings)
            dsn = dsn.replace(
                ":" + quote(settings.pg_password.get_secret_value()) + "@",
                ":${BQX_PG_PASSWORD}@",
                1,
            )
        return dsn
    import expectations.duckdb_dialect  # noqa: F401  (registers duckdb+bqx)

    return f"duckdb+bqx:///{settings.duckdb_path}"


def quality_dir(settings: Settings) -> Path:
    """Where the GX project, its results and the Data Docs live."""
    return settings.data_dir / "quality"


def docs_dir(settings: Settings) -> Path:
    """The Data Docs folder (``index.html`` inside)."""
    return quality_dir(settings) / "data_docs"


def _context(settings: Settings) -> AbstractDataContext:
    """The file GX context under ``$BQX_DATA_DIR/quality``, Data Docs site set."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    root = quality_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    sites = context.get_config().data_docs_sites or {}
    if DOCS_SITE not in sites:
        for name in list(sites):
            context.delete_data_docs_site(name)
        context.add_data_docs_site(
            site_name=DOCS_SITE,
            site_config={
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir(settings)),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        context.variables.save()
    return context


def _suite_plan(
    settings: Settings,
    target: Target,
    cfg: GateConfig,
    tables: dict[str, str] | None,
    since: pd.Timestamp | None = None,
    suites: list[str] | None = None,
) -> list[tuple[str, str, str, list[Rule]]]:
    """``(suite, table, time column, rules)`` for each suite of the target."""
    from bqx.warehouse import open_warehouse

    wh = open_warehouse(settings)
    try:
        if target == "raw":
            table = (tables or {}).get(RAW_SUITE, RAW_TABLE)
            schema, _, name = table.partition(".")
            if _columns(wh, schema, name) == {}:
                raise GateError(
                    f"table {table} does not exist on {settings.warehouse}: "
                    "ingest bars first (bqx ingest ...)"
                )
            return [(RAW_SUITE, table, "bar_start", raw_rules(cfg))]
        if target != "features":
            raise GateError(f"unknown target {target!r}: use raw or features")
        marts = _columns_by_table(wh, MARTS_SCHEMA)
        if suites is not None:
            unknown = sorted(set(suites) - set(marts))
            if unknown:
                raise GateError(
                    f"no mart {', '.join(unknown)} in schema {MARTS_SCHEMA} on "
                    f"{settings.warehouse}"
                )
            marts = {m: c for m, c in marts.items() if m in suites}
        if not marts:
            raise GateError(
                f"no tables in schema {MARTS_SCHEMA} on {settings.warehouse}: "
                "run bqx features build first"
            )
        schema, _, name = BARS_MODEL.partition(".")
        if _columns(wh, schema, name) == {}:
            raise GateError(
                f"table {BARS_MODEL} (the numbered bars the marts are built from) "
                f"does not exist on {settings.warehouse}: run bqx features build"
            )
        # the batch is event_timestamp >= since, i.e. bar starts from since - 1 min
        bar_since = None if since is None else _ts(since - pd.Timedelta(minutes=1))
        plan = []
        for mart, columns in sorted(marts.items()):
            table = (tables or {}).get(mart, f"{MARTS_SCHEMA}.{mart}")
            scope = Scope(table=table, bar_since=bar_since)
            rules = feature_rules(mart, columns, cfg, scope)
            # event_timestamp: what Feast's incremental materialization filters on
            plan.append((mart, table, "event_timestamp", rules))
        return plan
    finally:
        wh.close()


def _columns(wh, schema: str, table: str) -> dict[str, str]:
    return _columns_by_table(wh, schema, table).get(table, {})


def _columns_by_table(wh, schema: str, table: str | None = None) -> dict:
    sql = (
        "select table_name, column_name, data_type from information_schema.columns "
        f"where table_schema = '{schema}'"
        + (f" and table_name = '{table}'" if table else "")
        + " order by table_name, ordinal_position"
    )
    frame = wh.query_df(sql)
    out: dict[str, dict[str, str]] = {}
    for row in frame.itertuples(index=False):
        out.setdefault(row.table_name, {})[row.column_name] = str(row.data_type)
    return out


def _run_gx(
    settings: Settings,
    target: str,
    plan: list[tuple[str, str, str, list[Rule]]],
    since: pd.Timestamp | None,
) -> list[Outcome]:
    """Build the suites and validation definitions in GX, run them, read results.

    The definitions run one by one under one run id (no Checkpoint: a stored
    checkpoint that names a suite gone from the warehouse could not be loaded).
    """
    from datetime import UTC, datetime

    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(settings)
    kwargs: dict[str, Any] = {}
    if settings.warehouse != "postgres":
        config = {
            "memory_limit": settings.duckdb_memory_limit,
            "threads": settings.duckdb_threads,
        }
        kwargs["connect_args"] = {"config": config}
    with warnings.catch_warnings():  # "a more specific PostgresDatasource": no,
        # the generic one takes the same SQL on both engines
        warnings.filterwarnings("ignore", message=".*generic SQLDatasource.*")
        source = context.data_sources.add_or_update_sql(
            name=DATASOURCE,
            connection_string=_connection_string(settings),
            kwargs=kwargs,
        )
    try:
        definitions = []
        for suite_name, table, time_column, rules in plan:
            asset = source.add_query_asset(
                name=suite_name, query=_batch_query(table, time_column, since)
            )
            batch = asset.add_batch_definition_whole_table("batch")
            suite = gx.ExpectationSuite(name=suite_name, meta={"table": table})
            for rule in rules:
                suite.add_expectation(
                    gxe.UnexpectedRowsExpectation(
                        unexpected_rows_query=rule.sql,
                        description=f"{rule.name} [{rule.severity}]: "
                        f"{rule.description}",
                        severity=rule.severity,
                        meta={"rule": rule.name, "severity": rule.severity},
                    )
                )
            suite = context.suites.add_or_update(suite)
            definitions.append(
                context.validation_definitions.add_or_update(
                    gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
                )
            )
        run_id = RunIdentifier(run_name=f"bqx_{target}", run_time=datetime.now(UTC))
        runs = [
            d.run(result_format={"result_format": "COMPLETE"}, run_id=run_id)
            for d in definitions
        ]
    finally:
        source.get_engine().dispose()
        if settings.warehouse != "postgres":
            from expectations.duckdb_dialect import close_all

            close_all()  # DuckDB: release the file for other processes (dbt)
    by_suite = {name: rules for name, _, _, rules in plan}
    outcomes = []
    for run in runs:
        rules = {r.name: r for r in by_suite[run.suite_name]}
        for er in run.results:
            name = er.expectation_config.meta["rule"]
            outcomes.append(_outcome(run.suite_name, rules[name], er))
    return outcomes


def _outcome(suite: str, rule: Rule, er) -> Outcome:
    error = _exception_message(er.exception_info)
    result = er.result or {}
    rows = (result.get("details") or {}).get("unexpected_rows") or []
    return Outcome(
        suite=suite,
        expectation=rule.name,
        severity=rule.severity,
        success=bool(er.success) and error is None,
        unexpected_count=int(result.get("observed_value") or 0),
        examples=[dict(r) for r in rows[:EXAMPLES]],
        description=rule.description,
        error=f"the rule's query failed: {error}" if error else None,
    )


def _exception_message(info: Any) -> str | None:
    """The first raised exception's message in a GX ``exception_info``."""
    if not info:
        return None
    if not isinstance(info, dict) or "raised_exception" in info:
        entries = [info]
    else:
        entries = list(info.values())
    for entry in entries:
        get = entry.get if isinstance(entry, dict) else entry.__getitem__
        try:
            if get("raised_exception"):
                return str(get("exception_message")).strip().splitlines()[0]
        except (KeyError, TypeError, AttributeError, IndexError):
            return str(entry)
    return None


def _record_failures(
    settings: Settings,
    plan: list[tuple[str, str, str, list[Rule]]],
    outcomes: list[Outcome],
    since: pd.Timestamp | None,
) -> int:
    """Write the keys of every failing row to ``quality.failures`` (upsert)."""
    from bqx.warehouse import open_warehouse

    failed = {(o.suite, o.expectation) for o in outcomes if not (o.success or o.error)}
    wh = open_warehouse(settings)
    try:
        wh.execute(_FAILURES_DDL)
        if not failed:
            return 0
        before = _count_failures(wh)
        for suite, table, time_column, rules in plan:
            query = _batch_query(table, time_column, since)
            for rule in rules:
                if (suite, rule.name) not in failed:
                    continue
                batch = _batch_text(rule, query)
                detail = (
                    " || ' ' || ".join(
                        f"'{v}=' || coalesce(cast({v} as varchar), 'null')"
                        for v in rule.values
                    )
                    or "''"
                )
                wh.execute(
                    "insert into quality.failures "
                    "(suite, expectation, severity, pair, bar_time, detail) "
                    f"select '{suite}', '{rule.name}', '{rule.severity}', "
                    "pair, bar_time, "
                    f"min(detail) from (select pair, bar_time, {detail} as detail from "
                    f"({rule.sql.format(batch=batch)}) as offending) as q "
                    "where pair is not null and bar_time is not null "
                    "group by pair, bar_time "
                    "on conflict (suite, expectation, pair, bar_time) do update set "
                    "severity = excluded.severity, detail = excluded.detail, "
                    "last_seen_at = now()"
                )
        return _count_failures(wh) - before
    finally:
        wh.close()


def _count_failures(wh) -> int:
    return int(wh.query_df("select count(*) as n from quality.failures")["n"][0])


def validate(
    settings: Settings,
    target: Target,
    since: Any = None,
    config: GateConfig | None = None,
    tables: dict[str, str] | None = None,
    suites: list[str] | None = None,
) -> GateReport:
    """Run the suites of ``target`` (``raw`` or ``features``) on the warehouse.

    Args:
        settings: the configuration (warehouse, data dir).
        target: ``raw`` (suite ``raw_candles``) or ``features`` (one suite per mart).
        since: validate only rows at or after this time (UTC; the new range of an
            incremental run): ``bar_start`` for raw bars, ``event_timestamp`` (the
            bar end, what Feast materializes by) for marts. ``None``: every row.
        config: rule thresholds (default :class:`GateConfig`).
        tables: validate another table under a suite's rules, ``{suite: table}``
            (e.g. a corrupted copy).
        suites: run only these feature suites (marts); ``None``: all.

    Returns:
        The report; ``report.passed`` is False when a critical rule failed. The
        failing rows' keys are in ``quality.failures`` (new ones counted in
        ``report.failures_written``).

    Raises:
        GateError: nothing to validate or a bad argument.
    """
    cfg = config or GateConfig()
    start = _since(since)
    plan = _suite_plan(settings, target, cfg, tables, start, suites)
    outcomes = _run_gx(settings, target, plan, start)
    written = _record_failures(settings, plan, outcomes, start)
    return GateReport(target, start, outcomes, written)


def require_pass(
    settings: Settings,
    target: Target,
    since: Any = None,
    config: GateConfig | None = None,
) -> GateReport:
    """:func:`validate`, raising :class:`QualityGateError` on a critical failure."""
    report = validate(settings, target, since=since, config=config)
    if not report.passed:
        raise QualityGateError(report.failure_message())
    return report


def build_data_docs(settings: Settings) -> Path:
    """Render the Data Docs of the stored suites and results; returns index.html."""
    context = _context(settings)
    context.build_data_docs(site_names=[DOCS_SITE])
    index = docs_dir(settings) / "index.html"
    if not index.is_file():
        raise GateError(f"GX built no Data Docs in {docs_dir(settings)}")
    return index
