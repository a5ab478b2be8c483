"""Health that tells the truth, for the gateway and the worker alike.

Liveness (`/healthz`) says only that the process answers: a PostgreSQL or
Temporal outage must not get every pod restarted, since a restart fixes
neither. Readiness (`/readyz`) asks each dependency, each within a short
deadline, and fails with the reason of every check that failed, so a load
balancer stops sending work and an operator reads why.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

import asyncpg
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client
from temporalio.worker import Worker

# Each probe answers within this, so a probe's own timeout (Kubernetes: 5 s)
# sees a reason rather than a hung request.
PROBE_DEADLINE_S = 2.0

Probe = Callable[[], Awaitable[str]]


class Check(BaseModel):
    """One dependency's answer: what was asked and what came back."""

    ok: bool
    detail: str


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Check]


def postgres_probe(pool: asyncpg.Pool) -> Probe:
    """The ledger answers a query."""

    async def probe() -> str:
        await pool.fetchval("SELECT 1")
        return "the ledger answers"

    return probe


def temporal_probe(client: Client) -> Probe:
    """The Temporal frontend answers (the call every client makes on connecting)."""

    async def probe() -> str:
        await client.workflow_service.get_system_info(
            GetSystemInfoRequest(), retry=False, timeout=timedelta(seconds=PROBE_DEADLINE_S)
        )
        return f"the frontend at {client.service_client.config.target_host} answers"

    return probe


def worker_probe(worker: Worker, task_queue: str) -> Probe:
    """The worker polls its task queue (it stops answering once it stops)."""

    async def probe() -> str:
        if not worker.is_running:
            raise RuntimeError(f"the worker is not polling {task_queue}")
        return f"polling {task_queue}"

    return probe


async def _ask(name: str, probe: Probe) -> Check:
    try:
        detail = await asyncio.wait_for(probe(), PROBE_DEADLINE_S)
    except TimeoutError:
        return Check(ok=False, detail=f"{name} did not answer within {PROBE_DEADLINE_S:g} s")
    except Exception as error:  # any failure is the answer, and the reason is kept
        reason = getattr(error, "message", None) or str(error) or type(error).__name__
        return Check(ok=False, detail=f"{name} cannot be reached: {reason}")
    return Check(ok=True, detail=detail)


async def readiness(probes: dict[str, Probe]) -> Readiness:
    """Ask every dependency at once; ready only when all answer."""
    if not probes:  # nothing built yet: never ready by default
        return Readiness(
            status="not ready", checks={"process": Check(ok=False, detail="still starting")}
        )
    names = list(probes)
    answers = await asyncio.gather(*(_ask(name, probes[name]) for name in names))
    checks = dict(zip(names, answers, strict=True))
    ready = all(check.ok for check in answers)
    return Readiness(status="ready" if ready else "not ready", checks=checks)


def health_router(probes: Callable[[], dict[str, Probe]]) -> APIRouter:
    """`/healthz` and `/readyz` over the probes `probes()` names when asked
    (a process builds its pools after its routes)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Liveness)
    async def healthz() -> Liveness:
        """Liveness: the process answers. Dependencies are `/readyz`'s business."""
        return Liveness()

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        """Readiness: every dependency answers; 503 with each failed check's reason."""
        answer = await readiness(probes())
        return JSONResponse(
            answer.model_dump(), status_code=200 if answer.status == "ready" else 503
        )

    return router


def health_app(probes: dict[str, Probe]) -> FastAPI:
    """The worker's health endpoint: the same two routes on a port of its own
    (`AMEND_WORKER_HEALTH_BIND`), since a worker serves no other HTTP."""
    app = FastAPI(title="amend worker health", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(health_router(lambda: probes))
    return app
