"""Feast's own PostgreSQL and Redis connections take bqx's connection settings.

The deployment's ``feature_store*.yaml`` carries them as ``${BQX_*}`` values (no
credential in any file); these tests prove each one reaches Feast: a wrong sslmode
makes Feast's SQL registry fail naming it, the statement timeout and pool bound are
those of the registry's sessions, TLS and the password reach Feast's Redis client.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr

from bqx import features
from bqx.doctor import check_registry
from bqx.features import FeaturesError, check_feast_values, feast_config

ROOT = Path(__file__).resolve().parents[2]
#: trust auth accepts any password: this one would break a URL or a YAML string
ODD_PASSWORD = "p@ss:/w#'x\"y\\z%20 end"  # pragma: allowlist secret
REDIS_PASSWORD = "r3dis-pw"  # pragma: allowlist secret
SECRET_KEYS = re.compile(r"(password|token|secret)", re.IGNORECASE)


def test_no_feature_store_yaml_holds_a_credential():
    for path in sorted((ROOT / "feature_repo").glob("feature_store*.yaml")):
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith("#"):
                continue
            for match in re.finditer(r"password=(\S*?)(,|$)", line):
                assert match.group(1) == '"${BQX_REDIS_PASSWORD}"', (path, line_no)
        for key, value in _leaves(yaml.safe_load(text)):
            if SECRET_KEYS.search(key):
                assert value == "${BQX_PG_PASSWORD}", (path.name, key, value)


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}")
    else:
        yield prefix, tree


def test_production_config_takes_every_connection_setting(pg_settings):
    settings = pg_settings.model_copy(
        update={
            "deployment": "production",
            "pg_sslmode": "verify-full",
            "pg_sslrootcert": "/etc/ssl/rds-ca.pem",
            "pg_pool_size": 7,
            "pg_statement_timeout_ms": 4321,
            "pg_password": SecretStr(ODD_PASSWORD),
            "redis_ssl": True,
            "redis_password": SecretStr(REDIS_PASSWORD),
            "redis_db": 5,
        }
    )
    config = feast_config(settings)
    registry = config["registry"]
    assert registry["path"] == (
        f"postgresql+psycopg://postgres@127.0.0.1:5432/{settings.pg_database}"
    )
    engine = registry["sqlalchemy_config_kwargs"]
    assert engine["pool_size"] == 7 and engine["max_overflow"] == 0
    assert engine["connect_args"] == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/rds-ca.pem",
        "connect_timeout": 5,
        "options": "-c statement_timeout=4321",
        "password": ODD_PASSWORD,
    }
    offline = config["offline_store"]
    assert (offline["sslmode"], offline["sslrootcert_path"]) == (
        "verify-full",
        "/etc/ssl/rds-ca.pem",
    )
    assert offline["password"] == ODD_PASSWORD and offline["max_conn"] == 7
    redis = config["online_store"]["connection_string"]
    assert redis.startswith("127.0.0.1:6379,db=5,ssl=true,")
    assert redis.endswith(f',password="{REDIS_PASSWORD}"')
    # Feast parses it into the client's keyword arguments
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string(redis)
    assert nodes == [{"host": "127.0.0.1", "port": "6379"}]
    assert params["ssl"] is True and params["password"] == REDIS_PASSWORD
    assert params["db"] == 5


def test_unsafe_redis_password_is_refused_by_name(redis_settings):
    bad = redis_settings.model_copy(
        update={"redis_password": SecretStr("a,b")}  # pragma: allowlist secret
    )
    with pytest.raises(FeaturesError, match="BQX_REDIS_PASSWORD contains") as info:
        check_feast_values(bad)
    assert "a,b" not in str(info.value)
    with pytest.raises(FeaturesError, match="BQX_REDIS_PASSWORD"):
        features.store(bad)


def test_sslmode_reaches_feasts_sql_registry(redis_settings):
    """sslmode=require against the non-TLS test server: Feast's registry fails
    naming sslmode; the default works, with bqx's pool and statement timeout."""
    required = redis_settings.model_copy(update={"pg_sslmode": "require"})
    t0 = time.perf_counter()
    with pytest.raises(FeaturesError) as info:
        features.store(required)
    message = str(info.value)
    assert "Feast SQL registry at postgresql://postgres@127.0.0.1:5432/" in message
    assert "sslmode=require" in message and "SSL was required" in message
    assert "BQX_PG_SSLMODE" in message and "\n" not in message
    assert time.perf_counter() - t0 < 10
    check = check_registry(required)
    assert check.status == "fail" and "sslmode=require" in check.hint
    assert "SSL was required" in check.hint

    works = redis_settings.model_copy(
        update={
            "pg_statement_timeout_ms": 4321,
            "pg_pool_size": 3,
            "pg_password": SecretStr(ODD_PASSWORD),
        }
    )
    fs = features.store(works)
    engine = fs.registry.write_engine
    from sqlalchemy import text

    with engine.connect() as conn:
        assert conn.execute(text("show statement_timeout")).scalar() == "4321ms"
        ssl = conn.execute(
            text("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
        ).scalar()
    assert ssl is False  # sslmode=disable, the local default
    assert (engine.pool.size(), engine.pool._max_overflow) == (3, 0)
    assert ODD_PASSWORD not in repr(engine.url)
    assert check_registry(works).status == "warn"  # reachable, nothing applied yet
    # nothing bqx or Feast wrote to disk holds the password
    for path in works.data_dir.rglob("*"):
        if path.is_file():
            assert ODD_PASSWORD.encode() not in path.read_bytes(), path


def test_redis_tls_and_password_reach_feasts_client(redis_settings):
    tls = redis_settings.model_copy(
        update={"redis_ssl": True, "redis_password": SecretStr(REDIS_PASSWORD)}
    )
    assert tls.redis_target.startswith("rediss://127.0.0.1:6379/")
    t0 = time.perf_counter()
    with pytest.raises(FeaturesError, match=r"Redis at 127\.0\.0\.1:6379 is unreach"):
        features.check_online_store(tls)  # a TLS hello to a plain server
    assert time.perf_counter() - t0 < 1.0
    fs = features.store(tls)
    online = fs._get_provider().online_store
    client = online._get_client(fs.config.online_store)
    pool = client.connection_pool
    assert pool.connection_class.__name__ == "SSLConnection"
    assert pool.connection_kwargs["password"] == REDIS_PASSWORD
    assert pool.connection_kwargs["db"] == tls.redis_db
