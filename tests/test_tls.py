"""Temporal Cloud and TLS: the client every process builds (`connect_temporal`)
speaks mTLS and API keys as the settings say, and the ledger's connections
use `database_sslmode`.

Temporal Cloud cannot be reached from here, so the real dev server sits
behind a TLS-terminating relay with certificates made by openssl for the
test: one that demands a client certificate signed by the test's CA (as
Cloud's mTLS namespaces do), and one that does not (API-key namespaces).
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from pydantic import SecretStr
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from ledger.pool import create_pool
from tests.relay import relay
from worker.settings import Settings
from worker.temporal_connection import connect_temporal


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, subject: str, extension: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-subj", subject,
             "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extension)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext",
             cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    where = tmp_path_factory.mktemp("tls")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=amend test CA", cwd=where)  # fmt: skip
    _signed("server", "/CN=temporal.test", "subjectAltName=DNS:temporal.test\n", where)
    _signed("client", "/CN=amend-worker", "extendedKeyUsage=clientAuth\n", where)
    return Certificates(
        ca=where / "ca.pem",
        server_cert=where / "server.pem",
        server_key=where / "server.key",
        client_cert=where / "client.pem",
        client_key=where / "client.key",
    )


def frontend_tls(certs: Certificates, *, client_certificates: bool) -> ssl.SSLContext:
    """TLS as a Temporal frontend ends it: HTTP/2 (gRPC), and with mTLS a
    client certificate signed by the CA it trusts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    context.set_alpn_protocols(["h2"])
    if client_certificates:
        context.load_verify_locations(certs.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def on(address: str, **tls: object) -> Settings:
    return Settings(
        _env_file=None,
        temporal_address=address,
        temporal_tls_ca=tls.pop("ca"),
        temporal_tls_server_name="temporal.test",
        **tls,  # type: ignore[arg-type]
    )


async def test_mtls_presents_the_client_certificate_of_the_settings(
    dev_server: WorkflowEnvironment, certificates: Certificates
) -> None:
    target = dev_server.client.service_client.config.target_host
    async with relay(target, tls=frontend_tls(certificates, client_certificates=True)) as line:
        settings = on(
            line.address,
            ca=certificates.ca,
            temporal_tls_cert=certificates.client_cert,
            temporal_tls_key=certificates.client_key,
        )
        client = await connect_temporal(settings)
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert described.namespace_info.name == "default"
        assert line.client_subjects and set(line.client_subjects) == {"amend-worker"}

        # The same frontend refuses a client without the certificate.
        with pytest.raises(RuntimeError):
            await connect_temporal(on(line.address, ca=certificates.ca))


async def test_an_api_key_turns_tls_on_and_rides_on_every_call(
    dev_server: WorkflowEnvironment, certificates: Certificates
) -> None:
    target = dev_server.client.service_client.config.target_host
    async with relay(target, tls=frontend_tls(certificates, client_certificates=False)) as line:
        settings = on(line.address, ca=certificates.ca, temporal_api_key=SecretStr("cloud-key"))
        assert settings.temporal_tls is False  # the key alone turns TLS on
        client = await connect_temporal(settings)
        assert client.service_client.config.api_key == "cloud-key"
        assert client.service_client.config.tls  # TLS, which the relay speaks only
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
    # Without TLS the key would go in clear text: a plain frontend is not reached.
    with pytest.raises(RuntimeError):
        await connect_temporal(
            Settings(_env_file=None, temporal_address=target, temporal_api_key=SecretStr("k"))
        )


async def test_the_ledger_connects_with_the_sslmode_of_the_settings(database_url: str) -> None:
    plain = Settings(_env_file=None, database_url=database_url, database_sslmode="disable")
    assert plain.ledger_url is not None
    pool = await create_pool(plain.ledger_url, max_size=1)
    try:
        encrypted = await pool.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        server_has_tls = await pool.fetchval("SHOW ssl") == "on"
    finally:
        await pool.close()
    assert encrypted is False

    required = Settings(_env_file=None, database_url=database_url, database_sslmode="require")
    assert required.ledger_url is not None
    if server_has_tls:
        pool = await create_pool(required.ledger_url, max_size=1)
        try:
            query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert await pool.fetchval(query) is True
        finally:
            await pool.close()
    else:
        # A server without TLS refuses a client that requires it: the mode reached asyncpg.
        with pytest.raises((ConnectionError, asyncpg.PostgresError), match="SSL"):
            await create_pool(required.ledger_url, max_size=1)
