"""Settings come from the environment and bad ones stop the app at start-up."""

from __future__ import annotations

import pytest

from app import config


def test_production_refuses_the_default_secret_key(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("TIDINGS_ENV", "production")
    with pytest.raises(config.ConfigError, match="SECRET_KEY"):
        config.load(str(tmp_path), None)


def test_an_empty_variable_means_the_default(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "development")
    monkeypatch.setenv("SECRET_KEY", "")
    monkeypatch.setenv("DATABASE_URL", "")
    loaded = config.load(str(tmp_path), None)
    assert loaded["SECRET_KEY"] == config.DEFAULT_SECRET_KEY
    assert loaded["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'tidings.db'}"
    assert loaded["SESSION_COOKIE_SECURE"] is False
    assert loaded["HSTS_SECONDS"] == 0  # HSTS is for servers behind HTTPS only


def test_hsts_seconds_is_read_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "development")
    monkeypatch.setenv("HSTS_SECONDS", "31536000")
    assert config.load(str(tmp_path), None)["HSTS_SECONDS"] == 31536000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIDINGS_ENV", "staging"),
        ("SESSION_COOKIE_SECURE", "maybe"),
        ("HSTS_SECONDS", "a year"),
        ("HSTS_SECONDS", "-1"),
    ],
)
def test_unreadable_values_name_the_variable(monkeypatch, tmp_path, name, value) -> None:
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=name):
        config.load(str(tmp_path), None)


def test_single_sign_on_needs_the_clients_credentials_and_keeps_the_issuer_as_given(
    monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("TIDINGS_ENV", "development")
    monkeypatch.setenv("OIDC_ISSUER", "https://tenant.example.auth0.com/")
    with pytest.raises(config.ConfigError, match="OIDC_CLIENT_ID and OIDC_CLIENT_SECRET"):
        config.load(str(tmp_path), None)
    monkeypatch.setenv("OIDC_CLIENT_ID", "tidings")
    monkeypatch.setenv("OIDC_CLIENT_SECRET", "s3cret")
    # Some providers' issuer ends in "/": ID tokens name it so, and so must the setting.
    assert config.load(str(tmp_path), None)["OIDC_ISSUER"] == "https://tenant.example.auth0.com/"
