import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.env import Env, parse_database_url


def test_it_reads_booleans_case_insensitively() -> None:
    env = Env({"A": "TRUE", "B": "off", "C": "1"})
    assert env.bool("A", False) is True
    assert env.bool("B", True) is False
    assert env.bool("C", False) is True
    assert env.bool("MISSING", True) is True


def test_a_bad_boolean_fails_with_the_variable_name() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"DEBUG='maybe' is not a boolean"):
        Env({"DEBUG": "maybe"}).bool("DEBUG", False)


def test_a_bad_integer_fails_with_the_variable_name() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"EMAIL_PORT='twenty-five' is not a whole number"):
        Env({"EMAIL_PORT": "twenty-five"}).int("EMAIL_PORT", 25)
    with pytest.raises(ImproperlyConfigured, match="must be at least 1"):
        Env({"EMAIL_PORT": "0"}).int("EMAIL_PORT", 25, minimum=1)


def test_a_required_value_that_is_missing_fails() -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        Env({}).str("SECRET_KEY")


def test_name_file_is_read_for_any_value(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    assert Env({"SECRET_KEY_FILE": str(secret)}).str("SECRET_KEY") == "from-a-file"


def test_an_unreadable_name_file_fails_clearly(tmp_path) -> None:
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY_FILE=.* cannot be read"):
        Env({"SECRET_KEY_FILE": str(tmp_path / "nope")}).str("SECRET_KEY")


def test_urls_must_use_an_allowed_scheme_and_hide_passwords() -> None:
    with pytest.raises(ImproperlyConfigured) as info:
        Env({"CELERY_BROKER_URL": "kafka://user:hunter2@host"}).url(
            "CELERY_BROKER_URL", "filesystem://", schemes=("redis", "filesystem")
        )
    assert "hunter2" not in str(info.value)
    assert "redis" in str(info.value)


def test_database_urls() -> None:
    pg = parse_database_url("postgres://bob:s%40cret@db.local:6543/portal?sslmode=require")
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "bob",
        "s@cret",
        "db.local",
        "6543",
        "portal",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"}
    lite = parse_database_url("sqlite:////tmp/x/portal.sqlite3")
    assert lite["NAME"] == "/tmp/x/portal.sqlite3"
    with pytest.raises(ImproperlyConfigured, match="unsupported scheme 'mysql'"):
        Env({"DATABASE_URL": "mysql://x/y"}).database("DATABASE_URL", "sqlite:///x")
    with pytest.raises(ImproperlyConfigured, match="needs a database name"):
        Env({"DATABASE_URL": "postgres://host/"}).database("DATABASE_URL", "sqlite:///x")
    with pytest.raises(ImproperlyConfigured, match="port is not a number"):
        Env({"DATABASE_URL": "postgres://host:abc/db"}).database("DATABASE_URL", "sqlite:///x")


def test_lists_are_comma_separated() -> None:
    assert Env({"ALLOWED_HOSTS": " a.example, b.example ,"}).list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]
