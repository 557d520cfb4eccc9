"""docker-compose.yml and .env.example agree with each other and the settings.

Docker does not run here: the compose file is parsed and its ports, users, database
and bucket are compared with the bqx settings defaults and ``.env.example``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import SecretStr

from bqx.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
PORT = re.compile(r"^([\d.]+):(\$\{[^}]*\}|\d+):(\d+)$")
SECRET_KEYS = ("PASSWORD", "TOKEN", "SECRET", "KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=value: {line!r}"
            assert key not in values, f"{key} twice in .env.example"
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return Settings.model_construct()


def _var(text: str) -> tuple[str, str | None]:
    """``("NAME", default)`` of the one ``${NAME:-default}`` in ``text``."""
    found = VAR.findall(str(text))
    assert len(found) == 1, f"expected one ${{VAR}} in {text!r}"
    name, default = found[0]
    return name, default


def _env(service: dict, key: str) -> tuple[str, str | None]:
    return _var(service["environment"][key])


def _host_port(service: dict, container_port: int) -> tuple[str, str | None]:
    for mapping in service["ports"]:
        match = PORT.match(str(mapping))
        assert match, f"unexpected port mapping {mapping!r}"
        host, port, inner = match.groups()
        if int(inner) == container_port:
            assert host == "127.0.0.1", "publish on loopback only"
            return _var(port) if "$" in port else ("", port)
    raise AssertionError(f"port {container_port} not published")


def test_images_are_the_production_versions(compose):
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    assert services["minio"]["image"].startswith("minio/minio")
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == (
        "service_healthy"
    )


def test_postgres_matches_settings_and_env_example(compose, env_example, defaults):
    pg = compose["services"]["postgres"]
    for key, field in (("POSTGRES_USER", "pg_user"), ("POSTGRES_DB", "pg_database")):
        name, default = _env(pg, key)
        assert name == f"BQX_{field.upper()}"
        assert default == str(getattr(defaults, field)) == env_example[name]
    name, default = _env(pg, "POSTGRES_PASSWORD")
    assert name == "BQX_PG_PASSWORD" and default == env_example[name]
    assert "fake" in default
    name, port = _host_port(pg, 5432)
    assert name == "BQX_PG_PORT" and port == str(defaults.pg_port) == env_example[name]
    assert env_example["BQX_PG_HOST"] == defaults.pg_host == "127.0.0.1"


def test_redis_matches_settings_and_env_example(compose, env_example, defaults):
    redis = compose["services"]["redis"]
    name, port = _host_port(redis, 6379)
    assert name == "BQX_REDIS_PORT"
    assert port == str(defaults.redis_port) == env_example[name]
    name, default = _env(redis, "BQX_REDIS_PASSWORD")
    assert default == "" == env_example[name]
    assert defaults.redis_password.get_secret_value() == ""
    assert "requirepass" in " ".join(redis["command"])


def test_minio_credentials_endpoint_and_bucket(compose, env_example, defaults):
    minio, init = compose["services"]["minio"], compose["services"]["minio-init"]
    for service in (minio, init):
        for key, var in (("MINIO_ROOT_USER", "AWS_ACCESS_KEY_ID"),
                         ("MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY")):  # fmt: skip
            name, default = _env(service, key)
            assert name == var and default == env_example[var] and "fake" in default
    endpoint = urlparse(env_example["BQX_S3_ENDPOINT_URL"])
    _, port = _host_port(minio, 9000)
    assert (endpoint.hostname, str(endpoint.port)) == ("127.0.0.1", port)
    name, bucket = _env(init, "BQX_S3_BUCKET")
    assert bucket == defaults.s3_bucket == env_example[name]
    script = " ".join(init["command"])
    assert 'mc mb --ignore-existing "local/$$BQX_S3_BUCKET"' in script
    assert env_example["AWS_DEFAULT_REGION"] == defaults.s3_region


def test_every_compose_variable_is_in_env_example(compose, env_example):
    text = (ROOT / "docker-compose.yml").read_text()
    used = {name for name, _ in VAR.findall(text)}
    assert used and used <= set(env_example), used - set(env_example)


def test_env_example_lists_every_setting_and_loads(env_example, monkeypatch):
    expected = {f"BQX_{name.upper()}" for name in Settings.model_fields}
    listed = {k for k in env_example if k.startswith("BQX_")}
    assert listed == expected, (
        f"missing {sorted(expected - listed)}, unknown {sorted(listed - expected)}"
    )
    for key in [k for k in os.environ if k.startswith("BQX_")]:
        monkeypatch.delenv(key)
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.deployment == "production" and settings.warehouse == "postgres"


def test_no_real_credentials_in_env_example(env_example):
    for key, value in env_example.items():
        if any(word in key for word in SECRET_KEYS) and value:
            assert "fake" in value or value.startswith("aws-sm://"), key
    assert isinstance(Settings.model_fields["pg_password"].default, SecretStr)
