"""Container health checks for amend, shipped in the image as /opt/amend/healthcheck.py.

    python /opt/amend/healthcheck.py gateway [--live]   GET /readyz (or /healthz) on the
                                                         gateway's port
    python /opt/amend/healthcheck.py worker [--live]    the same on the worker's health
                                                         endpoint (AMEND_WORKER_HEALTH_BIND)

`/readyz` answers 200 only when PostgreSQL and Temporal answer (and, on a
worker, while it polls its task queue); otherwise 503 with each failed
check's reason, which this prints. `/healthz` says only that the process
answers. Both read the same AMEND_* settings as the process they check, and
need nothing beyond the standard library (the slim image has no curl).
Exit status 0: healthy; 1: not; 2: usage. Used by deploy/compose.yaml;
Kubernetes probes the same endpoints over HTTP.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from worker.settings import Settings


def _local(bind: str) -> str:
    """host:port to reach a process listening on `bind` from inside its container."""
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def health_url(settings: Settings, process: str, live: bool) -> str:
    path = "/healthz" if live else "/readyz"
    if process == "gateway":
        return f"http://{_local(f'{settings.gateway_host}:{settings.gateway_port}')}{path}"
    if settings.worker_health_bind is None:
        raise ValueError("AMEND_WORKER_HEALTH_BIND is not set: the worker serves no health")
    return f"http://{_local(settings.worker_health_bind)}{path}"


def check(url: str) -> tuple[bool, str]:
    """(healthy, why) from one GET of `url`."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return True, response.read().decode()
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        try:
            checks = json.loads(body).get("checks", {})
            reasons = [c["detail"] for c in checks.values() if not c.get("ok")]
        except (ValueError, AttributeError, KeyError, TypeError):
            reasons = []
        return False, "; ".join(reasons) or f"{url} answered {error.code}"
    except OSError as error:
        return False, f"{url} did not answer: {error}"


def main(argv: list[str]) -> int:
    args = argv[1:]
    live = "--live" in args
    rest = [a for a in args if a != "--live"]
    if len(rest) != 1 or rest[0] not in ("gateway", "worker"):
        print("usage: healthcheck.py gateway|worker [--live]", file=sys.stderr)
        return 2
    try:
        url = health_url(Settings(), rest[0], live)
    except ValueError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    healthy, why = check(url)
    if not healthy:
        print(f"unhealthy: {why}", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
