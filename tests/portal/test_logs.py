import logging

from portal.logs import JsonFormatter, RedactSecretsFilter, redact

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
