"""Fixtures for the operations tests: the OANDA fake, moto's AWS, a CLI runner."""

from __future__ import annotations

import os

import pytest
import typer
from typer.testing import CliRunner

from bqx.cli.ops import register
from ingestion.oanda.fake import FakeOanda
from ingestion.oanda.market import FakeMarket

#: Obviously fake AWS credentials for moto.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # pragma: allowlist secret
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def market() -> FakeMarket:
    """One pair, one day of simulated bars: enough for token checks."""
    return FakeMarket.from_simulator(["EUR_USD"], "2024-01-04", "2024-01-05", seed=3)


@pytest.fixture
def fake(market: FakeMarket):
    """A running OANDA fake."""
    with FakeOanda(market) as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch):
    """Fake AWS credentials in the environment (for moto)."""
    for key, value in FAKE_AWS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def mock_aws(aws_env):
    """moto's in-process AWS (Secrets Manager, S3)."""
    from moto import mock_aws as moto_mock

    with moto_mock():
        yield


@pytest.fixture
def moto_server(aws_env):
    """moto's HTTP server on a free port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def ops_app() -> typer.Typer:
    """A root app with only the ops commands (as ``bqx`` registers them)."""
    app = typer.Typer(pretty_exceptions_enable=False)
    register(app)

    @app.callback()
    def _root() -> None:
        """bqx (ops commands only)."""

    return app


@pytest.fixture
def cli(ops_app):
    """Invoke the ops app: ``cli("doctor")`` -> click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(ops_app, list(args))

    return invoke


def use_settings(monkeypatch, settings) -> None:
    """Make the CLI's ``get_settings()`` return ``settings`` (through BQX_* vars)."""
    from bqx.settings import get_settings

    for key in [k for k in os.environ if k.startswith("BQX_")]:
        monkeypatch.delenv(key)
    for key, value in settings.as_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(settings.data_dir.parent)  # no stray .env
    get_settings.cache_clear()
