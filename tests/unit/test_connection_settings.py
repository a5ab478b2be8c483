"""How the settings for Temporal Cloud and TLS become connections, and how
they are refused when they cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from temporalio.service import TLSConfig

from worker.settings import Settings
from worker.temporal_connection import TemporalSettingsError, temporal_tls


def test_a_plain_connection_unless_tls_is_asked_for() -> None:
    assert temporal_tls(Settings(_env_file=None)) is False


def test_an_api_key_alone_means_tls_with_the_system_roots() -> None:
    tls = temporal_tls(Settings(_env_file=None, temporal_api_key=SecretStr("k")))
    assert tls == TLSConfig()


def test_mtls_reads_the_certificate_key_and_ca_files(tmp_path: Path) -> None:
    for name in ("cert", "key", "ca"):
        (tmp_path / f"{name}.pem").write_bytes(f"PEM of {name}".encode())
    tls = temporal_tls(
        Settings(
            _env_file=None,
            temporal_tls_cert=tmp_path / "cert.pem",
            temporal_tls_key=tmp_path / "key.pem",
            temporal_tls_ca=tmp_path / "ca.pem",
            temporal_tls_server_name="ns.acct.tmprl.cloud",
        )
    )
    assert tls == TLSConfig(
        client_cert=b"PEM of cert",
        client_private_key=b"PEM of key",
        server_root_ca_cert=b"PEM of ca",
        domain="ns.acct.tmprl.cloud",
    )


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="AMEND_TEMPORAL_TLS_CERT and AMEND_TEMPORAL_TLS_KEY"):
        Settings(_env_file=None, temporal_tls_cert=Path("/etc/amend/client.pem"))


def test_an_unreadable_file_names_its_setting(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("PEM")
    settings = Settings(
        _env_file=None, temporal_tls_cert=tmp_path / "cert.pem", temporal_tls_key=tmp_path / "no"
    )
    with pytest.raises(TemporalSettingsError, match=r"^AMEND_TEMPORAL_TLS_KEY: cannot read .*/no"):
        temporal_tls(settings)


def test_sslmode_and_root_certificate_go_into_the_ledger_url() -> None:
    url = "postgresql://amend:pw@db.example:5432/amend?application_name=amend"
    assert Settings(_env_file=None, database_url=url).ledger_url == url
    assert Settings(_env_file=None).ledger_url is None
    settings = Settings(
        _env_file=None,
        database_url=url,
        database_sslmode="verify-full",
        database_sslrootcert=Path("/etc/amend/db-ca.pem"),
    )
    assert settings.ledger_url == (
        "postgresql://amend:pw@db.example:5432/amend?application_name=amend"
        "&sslmode=verify-full&sslrootcert=%2Fetc%2Famend%2Fdb-ca.pem"
    )


def test_the_setting_wins_over_an_sslmode_in_the_url() -> None:
    settings = Settings(
        _env_file=None,
        database_url="postgresql://h/amend?sslmode=disable",
        database_sslmode="require",
    )
    assert settings.ledger_url == "postgresql://h/amend?sslmode=require"


def test_an_unknown_sslmode_is_refused() -> None:
    with pytest.raises(ValidationError, match="database_sslmode"):
        Settings(_env_file=None, database_sslmode="on")
