"""How every process reaches Temporal: the client, its TLS and API key.

Apart from `worker.runtime` so that a command which only connects (the dev
stack waiting for its server, `amend round`, `amend doctor`) does not import
the worker, the gateway and their libraries first.
"""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig

from worker.observability import metrics_runtime
from worker.settings import Settings


class TemporalSettingsError(ValueError):
    """A TLS file named in the settings cannot be read; the message names the setting."""


def _pem(setting: str, path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as error:
        raise TemporalSettingsError(
            f"{setting}: cannot read {path}: {error.strerror or error}"
        ) from error


def temporal_tls(settings: Settings) -> TLSConfig | bool:
    """How the client secures its connection: False for a plain one (the dev
    server), else the TLS configuration the settings describe (Temporal Cloud
    takes mTLS with a client certificate, or an API key over TLS)."""
    if not settings.temporal_uses_tls:
        return False
    return TLSConfig(
        server_root_ca_cert=_pem("AMEND_TEMPORAL_TLS_CA", settings.temporal_tls_ca),
        domain=settings.temporal_tls_server_name,
        client_cert=_pem("AMEND_TEMPORAL_TLS_CERT", settings.temporal_tls_cert),
        client_private_key=_pem("AMEND_TEMPORAL_TLS_KEY", settings.temporal_tls_key),
    )


async def connect_temporal(settings: Settings, *, metrics: bool = False) -> Client:
    """A client; with `metrics`, on the runtime that exports the worker's
    Prometheus metrics (only the process running the worker asks for it)."""
    runtime = (
        metrics_runtime(settings.worker_metrics_bind)
        if metrics and settings.worker_metrics_bind
        else None
    )
    api_key = settings.temporal_api_key
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
        tls=temporal_tls(settings),
        api_key=api_key.get_secret_value() if api_key else None,
    )
