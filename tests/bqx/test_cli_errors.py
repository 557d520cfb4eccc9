"""The CLI's one-line errors for a failing service, also when a library wrapped
the driver's error in one of its own."""

from __future__ import annotations

import psycopg2
import pytest
import redis
from great_expectations.datasource.fluent.interfaces import TestConnectionError

from bqx.cli.main import _service_error
from tests.conftest import free_port


def _refused_postgres() -> psycopg2.OperationalError:
    with pytest.raises(psycopg2.OperationalError) as caught:
        psycopg2.connect(host="127.0.0.1", port=free_port(), user="postgres", connect_timeout=2)
    return caught.value


def test_database_error_wrapped_by_great_expectations_is_one_line():
    driver = _refused_postgres()
    try:  # as GX's SQL datasource raises it when its connection test fails
        raise TestConnectionError(cause=driver) from driver
    except TestConnectionError as exc:
        wrapped = exc
    message = _service_error(wrapped)
    assert message is not None and message.startswith("PostgreSQL failed: ")
    assert str(driver).strip().splitlines()[0] in message
    try:  # raised while handling it, without `from`
        try:
            raise driver
        except psycopg2.OperationalError:
            raise RuntimeError("the query failed")  # noqa: B904
    except RuntimeError as exc:
        assert _service_error(exc) == message


def test_redis_error_is_one_line_and_other_errors_are_not_services():
    with pytest.raises(redis.ConnectionError) as caught:
        redis.Redis(port=free_port(), socket_connect_timeout=1).ping()
    assert _service_error(caught.value).startswith("Redis failed: ")
    try:
        raise KeyError("x") from ValueError("y")
    except KeyError as exc:
        assert _service_error(exc) is None
    try:  # `from None` hides the context, as in a traceback
        try:
            raise caught.value
        except redis.ConnectionError:
            raise KeyError("x") from None
    except KeyError as exc:
        assert _service_error(exc) is None

