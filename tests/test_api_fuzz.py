"""A schema-driven fuzz of the whole HTTP API (schemathesis against the
gateway's own /openapi.json): no request gets a 5xx, no request gets a status
its route's OpenAPI document leaves out, and no rejected request changes the
ledger. Bounded (a few examples per operation) to stay fast.

Starting rounds is fuzzed with invalid bodies only: a valid one starts a real
round whose worker then writes to the ledger on its own, which would blur the
"no change" check; starting rounds for real is covered by the other tests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from temporalio.testing import WorkflowEnvironment

from ledger.store import Ledger
from tests.conftest import StackFactory
from worker.stack import Stack

EXAMPLES = 8
TABLES = (
    "rounds",
    "transitions",
    "proposals",
    "decisions",
    "decision_attempts",
    "constitution_versions",
    "principles",
    "api_tokens",
)


@pytest.fixture
async def stack(dev_server: WorkflowEnvironment, stack_on: StackFactory) -> AsyncIterator[Stack]:
    async with stack_on(dev_server) as running:
        yield running


async def snapshot(ledger: Ledger) -> tuple[str, ...]:
    """A digest of every table the API can write."""
    digests = []
    for table in TABLES:
        digest = await ledger.pool.fetchval(
            f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t"
        )
        digests.append(str(digest))
    return tuple(digests)


async def test_no_request_gets_a_5xx_and_no_rejected_request_changes_the_ledger(
    stack: Stack, ledger: Ledger
) -> None:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
        spec = (await http.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {stack.operator_token}"}
    problems: list[str] = []
    calls = 0

    def state() -> tuple[str, ...]:
        return asyncio.run_coroutine_threadsafe(snapshot(ledger), loop).result(30)

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            nonlocal calls
            before = state()
            response = case.call(base_url=stack.gateway_url, headers=headers, timeout=15)
            calls += 1
            where = f"{case.method} {case.formatted_path} ({mode.value})"
            documented = spec["paths"][operation.path][operation.method.lower()]["responses"]
            if str(response.status_code) not in documented:
                problems.append(
                    f"{where}: answered {response.status_code}, which its OpenAPI "
                    f"document does not list ({', '.join(sorted(documented))}): "
                    f"{response.text[:150]}"
                )
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code} {response.text[:200]}")
            elif response.status_code >= 400 and state() != before:
                problems.append(
                    f"{where}: rejected ({response.status_code}) but changed the ledger"
                )

        # Unsatisfiable: nothing to make invalid (no parameters and no body).
        with contextlib.suppress(hypothesis.errors.Unsatisfiable):
            one()

    def run_all() -> None:
        for result in schema.get_all_operations():
            if not isinstance(result, Ok):
                problems.append(f"the schema has an invalid operation: {result.err()}")
                continue
            operation = result.ok()
            modes = [GenerationMode.NEGATIVE]
            if not (operation.method.upper() == "POST" and operation.path == "/api/rounds"):
                modes.append(GenerationMode.POSITIVE)
            for mode in modes:
                fuzz(operation, mode)

    await asyncio.to_thread(run_all)
    assert not problems, "\n".join(problems)
    assert calls >= EXAMPLES * 10  # every operation was exercised
