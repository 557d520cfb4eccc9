"""The one configuration object of bqx.

Every setting comes from an environment variable with the ``BQX_`` prefix (or a
``.env`` file in the working directory). dbt's ``env_var()`` and Feast's ``${VAR}``
read the same names: :meth:`Settings.as_env` gives the strings they see, and the CLI
exports them before it calls either tool, so all three always agree.

Secrets are ``SecretStr``: they never show in ``repr``, logs or errors. A secret
may be given as a reference ``aws-sm://<secret-id>#<key>``, fetched from AWS Secrets
Manager when the settings load (``bqx.secrets``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bqx.pairs import UNIVERSE_28, resolve_pairs

Deployment = Literal["local", "production", "s3"]
WarehouseKind = Literal["duckdb", "postgres"]


class Settings(BaseSettings):
    """bqx configuration, read from ``BQX_*`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="BQX_", env_file=".env", extra="ignore", validate_default=True
    )

    deployment: Deployment = Field(
        "local", description="Feast deployment: local, production or s3."
    )
    warehouse: WarehouseKind | None = Field(
        None, description="Warehouse engine; default duckdb, postgres for production."
    )
    data_dir: Path = Field(
        Path(".bqx"), description="Folder for the embedded files (DuckDB, Parquet...)."
    )
    duckdb_path: Path | None = Field(None, description="DuckDB warehouse file.")
    marts_dir: Path | None = Field(None, description="Parquet copies of the marts.")
    duckdb_memory_limit: str = "4GB"
    duckdb_threads: int = 2
    duckdb_row_group_size: int = Field(
        8192,
        ge=2048,
        multiple_of=2048,
        description=(
            "Rows per DuckDB row group of the warehouse file; every writer (dbt, "
            "loads) attaches the file with it (see bqx.warehouse.attach_duckdb)."
        ),
    )

    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: SecretStr = SecretStr("")
    pg_database: str = "bqx"
    pg_sslmode: str = Field(
        "disable", description="libpq sslmode: disable locally, verify-full in production."
    )
    pg_sslrootcert: str = Field("", description="CA file for verify-ca/verify-full.")
    pg_pool_size: int = Field(4, ge=1, le=64, description="Pooled connections at most.")
    pg_statement_timeout_ms: int = Field(
        0, ge=0, description="Statement timeout in ms (0: none)."
    )
    pg_retries: int = Field(
        4, ge=0, le=20, description="Retries of a transaction on transient errors."
    )

    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0
    redis_password: SecretStr = SecretStr("")
    redis_ssl: bool = Field(
        False, description="TLS to Redis (e.g. ElastiCache encryption in transit)."
    )

    s3_bucket: str = "bqx"
    s3_endpoint_url: str = ""
    s3_region: str = "us-east-1"
    aws_endpoint_url: str = Field(
        "", description="Secrets Manager endpoint override (moto, LocalStack)."
    )

    oanda_token: SecretStr = SecretStr("")
    oanda_env: Literal["practice", "live", "custom"] = "practice"
    oanda_url: str = ""
    oanda_account: str = ""

    pairs: str = Field(
        ",".join(UNIVERSE_28), description="Comma-separated universe of pair ids."
    )

    @field_validator("pairs")
    @classmethod
    def _valid_pairs(cls, value: str) -> str:
        names = [p.strip() for p in value.split(",") if p.strip()]
        return ",".join(resolve_pairs(names))

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.warehouse is None:
            self.warehouse = "postgres" if self.deployment == "production" else "duckdb"
        if self.duckdb_path is None:
            self.duckdb_path = self.data_dir / "warehouse.duckdb"
        if self.marts_dir is None:
            self.marts_dir = self.data_dir / "marts"
        self.duckdb_path = self.duckdb_path.expanduser().resolve()
        self.marts_dir = self.marts_dir.expanduser().resolve()
        return self

    @model_validator(mode="after")
    def _resolve_secrets(self) -> Settings:
        """Fetch ``aws-sm://<secret-id>#<key>`` references (AWS Secrets Manager)."""
        from bqx.secrets import SECRET_FIELDS, is_reference, resolve_secret

        for name in SECRET_FIELDS:
            value = getattr(self, name).get_secret_value()
            if is_reference(value):
                setattr(self, name, SecretStr(resolve_secret(value, self)))
        return self

    @property
    def pair_list(self) -> list[str]:
        """The configured universe as a list of pair ids."""
        return self.pairs.split(",")

    @property
    def pg_dsn(self) -> str:
        """libpq connection string for the warehouse (contains the password)."""
        password = self.pg_password.get_secret_value()
        auth = quote(self.pg_user) + (f":{quote(password)}" if password else "")
        extra = f"&sslrootcert={quote(self.pg_sslrootcert)}" if self.pg_sslrootcert else ""
        return (
            f"postgresql://{auth}@{self.pg_host}:{self.pg_port}/{self.pg_database}"
            f"?sslmode={self.pg_sslmode}{extra}"
        )

    @property
    def pg_target(self) -> str:
        """Where the warehouse is, without secrets (for messages)."""
        return f"postgresql://{self.pg_user}@{self.pg_host}:{self.pg_port}/{self.pg_database}"

    @property
    def redis_target(self) -> str:
        """Redis address without secrets (for messages)."""
        scheme = "rediss" if self.redis_ssl else "redis"
        return f"{scheme}://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def as_env(self) -> dict[str, str]:
        """The ``BQX_*`` variables as strings, secrets included, for dbt and Feast."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"  # JSON/YAML booleans
            env[f"BQX_{name.upper()}"] = "" if value is None else str(value)
        return env


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` to reload)."""
    return Settings()
