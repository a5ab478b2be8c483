"""The gateway while its ledger database is away: every operator API route
answers 503 with a reason and `Retry-After`, every page a readable 503 page,
never a 500; and the gateway starts while the database is down, answering
again as soon as it is back.

PostgreSQL is the real server, reached through a relay the test cuts, as a
stopped or unreachable database looks to the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient
from temporalio.testing import WorkflowEnvironment

from gateway.app import create_app
from gateway.deps import GatewayConfig
from ledger.store import Ledger
from standins.serving import serve
from tests.relay import Relay, address_of, relay

AWAY = {"detail": "the ledger database is unavailable; try again shortly"}
# A value for each path parameter of the API, of the shape its route checks.
PATH_VALUES = {"round_id": "outage-1", "number": "1", "principle_id": "P1"}
PAGES = [
    "/rounds",
    "/rounds/outage-1",
    "/rounds/outage-1/dataset",
    "/versions",
    "/versions/1",
    "/versions/diff?from=1&to=1",
    "/principles/P1",
    "/charts",
]


@asynccontextmanager
async def gateway_behind(
    line: Relay, database_url: str, dev_server: WorkflowEnvironment
) -> AsyncIterator[str]:
    config = GatewayConfig(
        signing_secret=SecretStr("unused"),
        task_queue="ledger-outage",
        database_url=SecretStr(line.carrying(database_url)),
        slack=AsyncWebClient(base_url="http://127.0.0.1:9/api/"),
        shutdown_grace_s=0,
    )
    async with serve(create_app(config, dev_server.client)) as served:
        yield served.url


def api_routes(document: dict[str, Any]) -> list[tuple[str, str]]:
    """Every (method, path) of the API document, its path parameters filled in."""
    found = []
    for path, methods in document["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method in methods:
            found.append((method.upper(), path.format(**PATH_VALUES)))
    return found


async def test_every_api_route_and_page_answers_503_while_the_ledger_is_away(
    dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    _, token = await ledger.create_token("outage", "operator")
    async with (
        relay(address_of(database_url)) as line,
        gateway_behind(line, database_url, dev_server) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http,
    ):
        assert (await http.get("/api/rounds")).status_code == 200
        routes = api_routes((await http.get("/openapi.json")).json())
        assert len(routes) >= 20, routes

        line.cut()
        for method, path in routes:
            answer = await http.request(method, path, json={} if method == "POST" else None)
            assert answer.status_code == 503, (method, path, answer.status_code, answer.text)
            assert answer.json() == AWAY, (method, path)
            assert answer.headers["Retry-After"] == "5", (method, path)
        browser = {"Accept": "text/html", "Cookie": f"amend_token={token}"}
        for page in PAGES:
            answer = await http.get(page, headers={**browser, "Authorization": ""})
            assert answer.status_code == 503, (page, answer.status_code, answer.text[:300])
            assert answer.headers["content-type"].startswith("text/html")
            assert answer.headers["Retry-After"] == "5"
            assert "The ledger database is unavailable" in answer.text
            assert "Traceback" not in answer.text
        signing_in = await http.post("/login", data={"token": token}, headers=browser)
        assert signing_in.status_code == 503 and "unavailable" in signing_in.text
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and not ready.json()["checks"]["postgres"]["ok"]

        line.mend()
        assert (await http.get("/api/rounds")).status_code == 200
        assert (
            await http.get("/rounds", headers={**browser, "Authorization": ""})
        ).status_code == 200


async def test_the_gateway_starts_while_the_ledger_is_down_and_answers_once_it_is_back(
    dev_server: WorkflowEnvironment, ledger: Ledger, database_url: str
) -> None:
    _, token = await ledger.create_token("outage", "viewer")
    async with relay(address_of(database_url)) as line:
        line.cut()
        async with (
            gateway_behind(line, database_url, dev_server) as url,
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
            ) as http,
        ):
            assert (await http.get("/healthz")).status_code == 200
            away = await http.get("/api/constitution/versions")
            assert away.status_code == 503 and away.json() == AWAY
            line.mend()
            back = await http.get("/api/constitution/versions")
            assert back.status_code == 200, back.text
