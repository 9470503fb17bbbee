import io
import json
import logging

from portal.logs import JsonFormatter, RedactSecretsFilter, redact, request_id_var

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJpc3MiOjEyMzQ1LCJpYXQiOjF9.c2lnbmF0dXJlLXN0dWZm"


def test_it_redacts_every_kind_of_secret() -> None:
    text = (
        f"Authorization: Bearer {JWT} key={PEM} api_key=abcdef123456 password=hunter2hunter2 "
        f"'api_token': 'tok-999' Basic dXNlcjpwYXNzd29yZA=="
    )
    out = redact(text)
    for secret in [
        JWT,
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        "abcdef123456",
        "hunter2hunter2",
        "tok-999",
        "dXNlcjpwYXNzd29yZA==",
    ]:
        assert secret not in out
    assert "[REDACTED]" in out


def test_it_leaves_ordinary_text_alone() -> None:
    assert redact("tenant acme-corp frozen: unpaid invoice 42") == "tenant acme-corp frozen: unpaid invoice 42"


def test_the_log_pipeline_redacts_messages_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "calling with %s", (f"api_key={'s3cr3t-value'}",), None)
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {JWT}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactSecretsFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "s3cr3t-value" not in line
    assert JWT not in line
    assert "RuntimeError" in line


BEARER_TOKEN = "f9a8b7c6d5e4f3a2b1c0"
API_KEY = "ak-live-7Q2w9E4r6T8y"
# A provider's JSON answer holding a password with a quote and a backslash in it.
PASSWORD_JSON = '{"login": "acme", "password": "Tr0ub4dor\\"and\\\\3horse"}'
PLANTED = [BEARER_TOKEN, API_KEY, "Tr0ub4dor", "3horse", JWT, "c2lnbmF0dXJlLXN0dWZm"]


def configured_line(message: str, *args: object, **extra: object) -> str:
    """What the console handler of settings.LOGGING writes for one record."""
    from django.conf import settings
    from django.utils.module_loading import import_string

    config = settings.LOGGING
    console = config["handlers"]["console"]
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(import_string(config["formatters"][console["formatter"]]["()"])())
    for name in console["filters"]:
        handler.addFilter(import_string(config["filters"][name]["()"])())
    logger = logging.getLogger("tests.logs.configured")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning(message, *args, extra=extra)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_record_full_of_secrets_is_one_json_line_without_them() -> None:
    token = request_id_var.set("req-42")
    try:
        out = configured_line(
            "provider answered %s to Authorization: Bearer %s",
            PASSWORD_JSON,
            BEARER_TOKEN,
            url=f"https://provider.example/api?api_key={API_KEY}",
            session=JWT,
            body=PASSWORD_JSON,
            params={"password": "Tr0ub4dor", "tenant": "acme"},
            tenant="acme",
        )
    finally:
        request_id_var.reset(token)

    assert out.endswith("\n") and out.count("\n") == 1, out
    entry = json.loads(out)
    for secret in PLANTED:
        assert secret not in out
    assert entry["message"] == (
        'provider answered {"login": "acme", "password": "[REDACTED]"} to Authorization: [REDACTED]'
    )
    assert entry["url"] == "https://provider.example/api?api_key=[REDACTED]"
    assert entry["session"] == "[REDACTED]"
    assert json.loads(entry["body"]) == {"login": "acme", "password": "[REDACTED]"}
    assert entry["params"] == {"password": "[REDACTED]", "tenant": "acme"}
    assert entry["tenant"] == "acme"
    assert entry["request_id"] == "req-42"


def test_a_secret_in_quotes_never_breaks_the_line() -> None:
    for message, expected in [
        ('token="abc123secret"', 'token="[REDACTED]"'),
        ("password='pa ss\\w0rdz'", "password='[REDACTED]'"),
        # A JSON document quoted inside another one.
        ('{\\"password\\": \\"s3cr\\\\\\"et\\"}', '{\\"password\\": \\"[REDACTED]\\"}'),
    ]:
        assert json.loads(configured_line(message))["message"] == expected
