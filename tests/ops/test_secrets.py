"""Secrets: plain values, aws-sm:// references (moto), masking."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from pydantic import SecretStr

from bqx.secrets import (
    MaskingFilter,
    SecretError,
    mask,
    parse_reference,
    resolve_secret,
    resolved,
    secret_values,
)
from tests.conftest import make_settings

VALUE = "s3cr3t/with spaces&symbols"


def _put(name: str, payload: str) -> None:
    boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=name, SecretString=payload
    )


def test_plain_values_are_returned_unchanged():
    assert resolve_secret("plain-value") == "plain-value"
    assert resolve_secret("") == ""


def test_reference_resolves_a_json_key(mock_aws, tmp_path):
    _put("bqx/prod", json.dumps({"pg_password": VALUE, "other": "x"}))
    settings = make_settings(tmp_path)
    assert resolve_secret("aws-sm://bqx/prod#pg_password", settings) == VALUE
    whole = resolve_secret("aws-sm://bqx/prod", settings)
    assert json.loads(whole)["pg_password"] == VALUE


def test_errors_name_the_secret_never_the_value(mock_aws):
    _put("bqx/prod", json.dumps({"pg_password": VALUE}))
    _put("bqx/raw", VALUE)
    with pytest.raises(SecretError, match="bqx/missing.*ResourceNotFound"):
        resolve_secret("aws-sm://bqx/missing#pg_password")
    with pytest.raises(SecretError) as info:
        resolve_secret("aws-sm://bqx/prod#nope")
    assert "'nope'" in str(info.value) and "bqx/prod" in str(info.value)
    assert VALUE not in str(info.value)
    with pytest.raises(SecretError) as info:
        resolve_secret("aws-sm://bqx/raw#pg_password")
    assert "not a JSON object" in str(info.value) and VALUE not in str(info.value)


@pytest.mark.parametrize("ref", ["aws-sm://", "aws-sm://#key", "aws-sm://id#"])
def test_bad_references_are_refused(ref):
    with pytest.raises(SecretError, match="bad secret reference"):
        parse_reference(ref)


def test_resolved_settings_replace_references_only(mock_aws, tmp_path):
    _put("bqx/prod", json.dumps({"token": VALUE}))
    settings = make_settings(
        tmp_path,
        oanda_token="aws-sm://bqx/prod#token",
        # pragma: allowlist nextline secret
        pg_password="plain-pw",
    )
    out = resolved(settings)
    assert out.oanda_token.get_secret_value() == VALUE
    assert out.pg_password.get_secret_value() == "plain-pw"
    assert VALUE not in repr(out) and VALUE not in str(out.model_dump())
    assert resolved(out) is out  # nothing left to resolve
    assert sorted(secret_values(out)) == sorted([VALUE, "plain-pw"])


def test_reference_through_the_moto_http_server(moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_server)
    boto3.client(
        "secretsmanager", endpoint_url=moto_server, region_name="us-east-1"
    ).create_secret(Name="bqx/http", SecretString=json.dumps({"k": VALUE}))
    assert resolve_secret("aws-sm://bqx/http#k") == VALUE


def test_mask_hides_raw_and_url_quoted_forms():
    # pragma: allowlist nextline secret
    dsn = "postgresql://u:s3cr3t%2Fwith%20spaces%26symbols@h/db"
    text = f"raw {VALUE} dsn {dsn}"
    masked = mask(text, [SecretStr(VALUE), "", None])
    assert VALUE not in masked and "s3cr3t" not in masked
    assert masked.count("***") == 2
    assert mask("nothing here", [VALUE]) == "nothing here"


def test_masking_filter_rewrites_log_records(caplog):
    logger = logging.getLogger("bqx.test.masking")
    caplog.set_level(logging.INFO, logger="bqx.test.masking")
    caplog.handler.addFilter(MaskingFilter([VALUE]))
    try:
        logger.info("connecting with %s", VALUE)
        try:
            raise RuntimeError(f"failed with {VALUE}")
        except RuntimeError:
            logger.exception("boom")
    finally:
        caplog.handler.filters.clear()
    assert "connecting with ***" in caplog.text
    assert VALUE not in caplog.text


def test_unconfigured_logging_is_masked_too(tmp_path):
    code = (
        "import logging; from tests.conftest import make_settings; "
        "from bqx.secrets import install_log_masking; from pathlib import Path; "
        f"s = make_settings(Path({str(tmp_path)!r}), oanda_token={VALUE!r}); "
        "install_log_masking(s); "
        f"logging.getLogger('x').warning('token is %s', {VALUE!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stderr.strip() == "token is ***"
