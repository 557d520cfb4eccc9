import pytest
from pydantic import ValidationError

from bqx.settings import Settings


def test_env_prefix_and_derived_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("BQX_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BQX_PAIRS", "eur_usd,USDJPY")
    s = Settings(_env_file=None)
    assert s.pair_list == ["EUR_USD", "USD_JPY"]
    assert s.duckdb_path == tmp_path / "warehouse.duckdb"
    assert s.marts_dir == tmp_path / "marts"
    assert s.warehouse == "duckdb"


def test_production_defaults_to_postgres(monkeypatch):
    monkeypatch.setenv("BQX_DEPLOYMENT", "production")
    assert Settings(_env_file=None).warehouse == "postgres"


def test_bad_pair_in_settings_is_named(monkeypatch):
    monkeypatch.setenv("BQX_PAIRS", "EUR_USD,ABC_DEF")
    with pytest.raises(ValidationError, match="ABC_DEF"):
        Settings(_env_file=None)


def test_secrets_are_masked_but_exported(monkeypatch):
    monkeypatch.setenv("BQX_PG_PASSWORD", "s3cr3t-pw")
    monkeypatch.setenv("BQX_OANDA_TOKEN", "tok-123456")
    s = Settings(_env_file=None)
    assert "s3cr3t-pw" not in repr(s) and "tok-123456" not in repr(s)
    assert "s3cr3t-pw" not in s.pg_target
    assert s.as_env()["BQX_PG_PASSWORD"] == "s3cr3t-pw"
    assert "s3cr3t-pw" in s.pg_dsn


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("BQX_REDIS_DB=7\n")
    assert Settings().redis_db == 7
