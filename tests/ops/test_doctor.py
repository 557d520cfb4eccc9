"""bqx doctor: every component, both deployments, failures named with a hint."""

from __future__ import annotations

import time

import boto3
import pytest

from bqx.doctor import (
    check_oanda,
    check_redis,
    check_registry,
    check_s3,
    check_warehouse,
    failed,
    run_checks,
)
from bqx.runs import ensure_ops_schema
from bqx.warehouse import open_warehouse
from tests.conftest import free_port
from tests.ops.conftest import use_settings


def _by_component(checks):
    return {c.component: c for c in checks}


def test_clean_local_deployment(duck_settings, cli, monkeypatch):
    use_settings(monkeypatch, duck_settings)
    result = cli("doctor")
    assert result.exit_code == 0, result.output
    assert "ops schema not created yet" in result.output
    result = cli("doctor", "--init")
    assert result.exit_code == 0, result.output
    checks = _by_component(run_checks(duck_settings))
    assert checks["warehouse"].status == "ok"
    assert checks["warehouse"].hint == "schema v1"
    assert checks["feast registry"].status == "warn"
    assert {checks[c].status for c in ("redis", "s3", "oanda")} == {"skip"}
    assert not failed(list(checks.values()))


def test_production_with_postgres_and_redis(redis_settings, cli, monkeypatch):
    use_settings(monkeypatch, redis_settings)
    result = cli("doctor", "--init")
    assert result.exit_code == 0, result.output
    checks = _by_component(run_checks(redis_settings))
    assert checks["warehouse"].status == "ok"
    assert checks["warehouse"].target.startswith("postgresql://postgres@127.0.0.1:")
    assert checks["redis"].status == "ok"
    registry = checks["feast registry"]
    assert registry.status == "warn" and "features publish" in registry.hint


def test_redis_down_fails_within_a_second_naming_it(redis_settings, cli, monkeypatch):
    port = free_port()
    down = redis_settings.model_copy(update={"redis_port": port})
    t0 = time.perf_counter()
    check = check_redis(down)
    assert time.perf_counter() - t0 < 1.0
    assert check.status == "fail" and check.failed
    assert f"Redis at 127.0.0.1:{port} is unreachable" in check.hint
    use_settings(monkeypatch, down)
    result = cli("doctor")
    assert result.exit_code == 1
    assert "redis" in result.output and f"127.0.0.1:{port}" in result.output
    assert "required check(s) failed: redis" in str(result.exception)


def test_unreachable_warehouse_fails(pg_settings, cli, monkeypatch):
    down = pg_settings.model_copy(update={"pg_port": free_port()})
    check = check_warehouse(down)
    assert check.status == "fail"
    assert "start PostgreSQL" in check.hint and str(down.pg_port) in check.target
    use_settings(monkeypatch, down)
    assert cli("doctor").exit_code == 1


@pytest.mark.parametrize(
    ("version", "status", "words"),
    [(0, "fail", "older"), (99, "fail", "newer than this bqx")],
)
def test_schema_version_must_be_current(any_settings, version, status, words):
    with open_warehouse(any_settings) as wh:
        ensure_ops_schema(wh)
        wh.execute(f"update ops.schema_version set version = {version}")
    check = check_warehouse(any_settings)
    assert check.status == status and words in check.hint
    if version == 0:  # --init upgrades an older schema
        assert check_warehouse(any_settings, init=True).status == "ok"


def test_oanda_token_checked_against_the_fake(duck_settings, fake):
    good = duck_settings.model_copy(
        update={"oanda_env": "custom", "oanda_url": fake.url}
    )
    from pydantic import SecretStr

    ok = check_oanda(good.model_copy(update={"oanda_token": SecretStr(fake.token)}))
    assert ok.status == "ok" and ok.target == f"{fake.url} (custom)"
    before = fake.requests
    bad = check_oanda(good.model_copy(update={"oanda_token": SecretStr("wrong-one")}))
    assert bad.status == "fail" and "HTTP 401" in bad.hint
    assert "custom environment" in bad.hint and fake.requests > before


def test_oanda_unreachable_and_misconfigured(duck_settings):
    from pydantic import SecretStr

    base = duck_settings.model_copy(
        update={"oanda_env": "custom", "oanda_token": SecretStr("t0ken-value")}
    )
    down = check_oanda(
        base.model_copy(update={"oanda_url": f"http://127.0.0.1:{free_port()}"})
    )
    assert down.status == "fail" and "ConnectionError" in down.hint
    bad_url = check_oanda(base.model_copy(update={"oanda_url": "ftp://x"}))
    assert bad_url.status == "fail" and "BQX_OANDA_URL" in bad_url.hint


def test_s3_bucket_checked(duck_settings, moto_server):
    s3 = duck_settings.model_copy(
        update={
            "deployment": "s3",
            "s3_bucket": "bqx-ops",
            "s3_endpoint_url": moto_server,
        }
    )
    missing = check_s3(s3)
    assert missing.status == "fail" and "BQX_S3_BUCKET" in missing.hint
    assert failed([missing]) == [missing]
    # another deployment with an endpoint set (the laptop's MinIO): checked, optional
    elsewhere = check_s3(s3.model_copy(update={"deployment": "local"}))
    assert elsewhere.status == "fail" and "optional" in elsewhere.hint
    assert not failed([elsewhere])
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="bqx-ops")
    found = check_s3(s3)
    assert found.status == "ok" and found.target == f"s3://bqx-ops at {moto_server}"
    assert check_s3(s3.model_copy(update={"deployment": "local"})).status == "ok"


def test_local_registry_file(duck_settings):
    path = duck_settings.data_dir / "feast" / "registry.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert check_registry(duck_settings).status == "fail"
    path.write_bytes(b"\x0a\x03bqx")
    assert check_registry(duck_settings).status == "ok"


@pytest.mark.slow
def test_sql_registry_after_a_real_feast_apply(redis_settings):
    from bqx.features import apply

    assert check_registry(redis_settings).status == "warn"
    apply(redis_settings)
    check = check_registry(redis_settings)
    assert check.status == "ok" and check.hint.endswith("feature views")
    assert int(check.hint.split()[0]) >= 1


def test_the_bqx_entry_point(redis_settings, tmp_path):
    """``bqx doctor`` / ``bqx runs`` as installed: exit codes and messages."""
    import os
    import subprocess
    import sys

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BQX_")}
    env.update(redis_settings.as_env())
    env["BQX_REDIS_PORT"] = str(port)

    def bqx(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "bqx.cli.main", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    down = bqx("doctor", "--init")
    assert down.returncode == 1, down.stdout + down.stderr
    assert "doctor: 1 required check(s) failed: redis" in down.stderr
    assert f"Redis at 127.0.0.1:{port} is unreachable" in " ".join(down.stdout.split())
    env["BQX_REDIS_PORT"] = str(redis_settings.redis_port)
    up = bqx("doctor")
    assert up.returncode == 0, up.stdout + up.stderr
    runs = bqx("runs", "--last", "3")
    assert runs.returncode == 0 and "no runs recorded yet" in runs.stdout
    env["BQX_OANDA_TOKEN"] = "aws-sm://"
    bad = bqx("runs")
    assert bad.returncode == 1 and "bad secret reference" in bad.stderr
