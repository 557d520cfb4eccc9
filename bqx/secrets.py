"""Secrets: resolve ``aws-sm://`` references, keep secret values out of any text.

A secret setting (``BQX_PG_PASSWORD``, ``BQX_REDIS_PASSWORD``, ``BQX_OANDA_TOKEN``)
holds either the value itself (from the environment or ``.env``) or a reference
``aws-sm://<secret-id>#<key>`` to a JSON key of an AWS Secrets Manager secret
(``aws-sm://<secret-id>`` alone takes the whole secret string). References are
fetched with boto3; the region is ``BQX_S3_REGION`` and the endpoint, when the
settings have one, ``aws_endpoint_url`` (botocore also honours the standard
``AWS_ENDPOINT_URL_SECRETS_MANAGER``). Credentials are the standard ``AWS_*`` ones.

:func:`mask` replaces secret values in any text (log lines, errors, run rows);
:class:`MaskingFilter` does it for the records of a logger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import SecretStr

if TYPE_CHECKING:
    from bqx.settings import Settings

PREFIX = "aws-sm://"
MASK = "***"
SECRET_FIELDS = ("pg_password", "redis_password", "oanda_token")


class SecretError(RuntimeError):
    """A secret reference that cannot be resolved (names the id, never the value)."""


def is_reference(value: str) -> bool:
    """True when ``value`` is an ``aws-sm://`` reference."""
    return value.startswith(PREFIX)


def parse_reference(value: str) -> tuple[str, str | None]:
    """Split ``aws-sm://<secret-id>#<key>`` into ``(secret_id, key or None)``.

    Raises:
        SecretError: the reference has no secret id or an empty key.
    """
    body = value[len(PREFIX) :]
    secret_id, sep, key = body.partition("#")
    if not secret_id:
        raise SecretError(
            f"bad secret reference {value!r}: expected aws-sm://<secret-id>#<key>"
        )
    if sep and not key:
        raise SecretError(f"bad secret reference {value!r}: empty key after '#'")
    return secret_id, key or None


def _client(settings: Settings | None) -> Any:
    import boto3
    from botocore.config import Config

    region = getattr(settings, "s3_region", "") or "us-east-1"
    endpoint = getattr(settings, "aws_endpoint_url", "") or None
    return boto3.client(
        "secretsmanager",
        region_name=region,
        endpoint_url=endpoint,
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3}),
    )


@contextmanager
def _no_debug_logs() -> Iterator[None]:
    """Silence DEBUG records while a secret is fetched (botocore logs the body)."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.DEBUG))
    try:
        yield
    finally:
        logging.disable(previous)


def resolve_secret(value: str, settings: Settings | None = None) -> str:
    """The secret value for ``value``: plain values unchanged, references fetched.

    Args:
        value: a plain secret or ``aws-sm://<secret-id>[#<key>]``.
        settings: where the region (``s3_region``) and endpoint come from.

    Raises:
        SecretError: the secret or key cannot be read; the message names the secret
            id and key, never a value.
    """
    if not is_reference(value):
        return value
    from botocore.exceptions import BotoCoreError, ClientError

    secret_id, key = parse_reference(value)
    where = f"AWS Secrets Manager secret {secret_id!r}"
    try:
        with _no_debug_logs():
            answer = _client(settings).get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise SecretError(f"cannot read {where}: {code}") from None
    except BotoCoreError as exc:
        raise SecretError(f"cannot read {where}: {type(exc).__name__}") from None
    text = answer.get("SecretString")
    if text is None:
        raise SecretError(f"{where} has no SecretString (binary secrets unsupported)")
    if key is None:
        return text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SecretError(f"{where} is not a JSON object, so it has no key {key!r}")
    if key not in data:
        raise SecretError(f"{where} has no key {key!r}")
    return str(data[key])


def resolved(settings: Settings) -> Settings:
    """``settings`` with every ``aws-sm://`` secret field replaced by its value.

    Idempotent: settings whose secrets are plain values come back unchanged.
    """
    update = {}
    for name in SECRET_FIELDS:
        current = getattr(settings, name, None)
        if isinstance(current, SecretStr) and is_reference(current.get_secret_value()):
            value = resolve_secret(current.get_secret_value(), settings)
            update[name] = SecretStr(value)
    return settings.model_copy(update=update) if update else settings


def secret_values(settings: Settings) -> list[str]:
    """The non-empty secret values of ``settings`` (the things :func:`mask` hides)."""
    values = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            values.append(value.get_secret_value())
    return values


def _variants(secret: str) -> set[str]:
    """The secret as written, and URL-quoted (as in a DSN)."""
    return {secret, quote(secret), quote(secret, safe="")} - {""}


def mask(text: str, secrets: Iterable[str | SecretStr | None]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    forms: set[str] = set()
    for secret in secrets:
        if isinstance(secret, SecretStr):
            secret = secret.get_secret_value()
        if secret:
            forms |= _variants(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def scrub_exception(exc: BaseException, secrets: Iterable[str]) -> None:
    """Mask secrets in the string arguments of ``exc`` (in place, same type)."""
    secrets = list(secrets)
    if not secrets:
        return
    try:
        exc.args = tuple(
            mask(a, secrets) if isinstance(a, str) else a for a in exc.args
        )
    except (AttributeError, TypeError):  # pragma: no cover - exotic exceptions
        pass


class MaskingFilter(logging.Filter):
    """A logging filter that masks secret values in every record it sees."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            record.msg = mask(message, self.secrets)
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                scrub_exception(record.exc_info[1], self.secrets)
                record.exc_text = None
        return True


def install_log_masking(
    settings: Settings, logger: logging.Logger | None = None
) -> None:
    """Mask the secrets of ``settings`` in every handler of ``logger`` (root).

    Python's last-resort handler (what prints warnings when logging is not
    configured) is masked too.
    """
    logger = logger or logging.getLogger()
    masking = MaskingFilter(secret_values(settings))
    handlers = list(logger.handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        for old in [f for f in handler.filters if isinstance(f, MaskingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(masking)
