"""A secret given as an env var or an aws-sm:// reference never leaks.

Scanned: every log line, the ops.runs rows, exception text, ``bqx doctor`` and
``bqx runs`` output, ``--help``.
"""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from bqx.runs import list_runs, record_run
from bqx.secrets import SecretError, resolved
from bqx.settings import get_settings
from tests.ops.conftest import use_settings

ENV_SECRET = "pg-pass-5f8c1e"  # env var  # pragma: allowlist secret
SM_SECRET = "oanda-tok-9d2b7a"  # aws-sm://  # pragma: allowlist secret


def _assert_clean(text: str, where: str) -> None:
    for secret in (ENV_SECRET, SM_SECRET):
        assert secret not in text, f"secret leaked into {where}"


@pytest.fixture
def leaky_env(pg_settings, fake, mock_aws, monkeypatch, caplog):
    """Production-style settings whose two secrets come from env and Secrets Manager."""
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name="bqx/ops-test", SecretString=json.dumps({"oanda_token": SM_SECRET})
    )
    use_settings(monkeypatch, pg_settings)
    monkeypatch.setenv("BQX_PG_PASSWORD", ENV_SECRET)  # trust auth accepts it
    monkeypatch.setenv("BQX_OANDA_TOKEN", "aws-sm://bqx/ops-test#oanda_token")
    monkeypatch.setenv("BQX_OANDA_ENV", "custom")
    monkeypatch.setenv("BQX_OANDA_URL", fake.url)
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    settings = resolved(get_settings())
    assert settings.pg_password.get_secret_value() == ENV_SECRET
    assert settings.oanda_token.get_secret_value() == SM_SECRET
    return settings


def test_no_secret_in_logs_runs_errors_or_doctor(leaky_env, cli, caplog):
    settings = leaky_env
    # doctor: the OANDA check fails (the fake has another token) and says why
    result = cli("doctor", "--init")
    assert result.exit_code == 1
    assert "HTTP 401" in result.output and "warehouse" in result.output
    assert "failed: oanda" in str(result.exception)
    _assert_clean(result.output + str(result.exception), "bqx doctor output")

    # a command whose error text carries both secrets (e.g. a driver echoing a DSN)
    dsn = settings.pg_dsn
    with pytest.raises(RuntimeError) as info:
        args = {"dsn": dsn, "token": SM_SECRET}
        with record_run(settings, "ingest csv", args) as run:
            run.stage("load")
            logging.getLogger("bqx.test").warning("connecting to %s", dsn)
            raise RuntimeError(f"could not load via {dsn} with {SM_SECRET}")
    _assert_clean(str(info.value), "the re-raised exception")
    assert "could not load via" in str(info.value)

    frame = list_runs(settings)
    assert len(frame) == 1
    _assert_clean(frame.to_json(), "ops.runs")
    assert frame.iloc[0].stage == "load" and "***" in frame.iloc[0].error

    result = cli("runs")
    assert result.exit_code == 0 and "ingest csv" in result.output
    _assert_clean(result.output, "bqx runs output")

    for args in (["--help"], ["doctor", "--help"], ["runs", "--help"]):
        _assert_clean(cli(*args).output, f"{args} output")
    _assert_clean(repr(settings), "repr(settings)")
    assert "connecting to postgresql://postgres:***@127.0.0.1" in caplog.text
    _assert_clean(caplog.text, "log lines")


def test_unresolvable_reference_is_one_line_without_values(leaky_env, cli, monkeypatch):
    monkeypatch.setenv("BQX_OANDA_TOKEN", "aws-sm://bqx/ops-test#missing_key")
    get_settings.cache_clear()
    with pytest.raises(SecretError) as info:
        resolved(get_settings())
    assert "bqx/ops-test" in str(info.value) and "'missing_key'" in str(info.value)
    _assert_clean(str(info.value), "SecretError")
    result = cli("doctor")
    assert result.exit_code == 1
    _assert_clean(result.output + repr(result.exception), "doctor on a bad reference")
