"""One source per mart, chosen by the deployment in ``bqx.settings``.

``local``: the Parquet copies of the DuckDB marts (a folder per mart, a file per UTC
day: ``<marts_dir>/<mart>/<YYYY-MM-DD>.parquet``); ``s3``: the same files in the S3
bucket (``s3://<bucket>/marts/<mart>/``); ``production``: the PostgreSQL mart tables.
"""

from __future__ import annotations

from families import FAMILIES, LABELS

from bqx.settings import get_settings


def make_source(name: str, mart: str):
    """The data source of one mart for the configured deployment."""
    settings = get_settings()
    if settings.deployment == "production":
        from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import (  # noqa: E501
            PostgreSQLSource,
        )

        return PostgreSQLSource(
            name=name, table=f"marts.{mart}", timestamp_field="event_timestamp"
        )
    from feast import FileSource

    if settings.deployment == "s3":
        return FileSource(
            name=name,
            path=f"s3://{settings.s3_bucket}/marts/{mart}",
            timestamp_field="event_timestamp",
            s3_endpoint_override=settings.s3_endpoint_url or None,
        )
    return FileSource(
        name=name,
        path=str(settings.marts_dir / mart / "*.parquet"),
        timestamp_field="event_timestamp",
    )


SOURCES = {
    family: make_source(f"{family}_source", spec["mart"])
    for family, spec in FAMILIES.items()
}
labels_source = make_source("labels_source", LABELS["mart"])
