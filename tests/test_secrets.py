"""No secret leaks: after a full round on the real stack (proposals, a
refused outsider, a forged request, a decision, retraining), none of the
service's secrets appears in its logs, the round's workflow history, any
ledger row, an answer the gateway gave, or anything the Slack stand-in
received (messages, ephemeral messages, modals)."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from constitution import RoundState
from constitution.contracts import RoundResult
from ledger.store import Ledger
from standins.reviewer import SimulatedReviewer, decide_in_slack, wait_for_proposals
from tests.conftest import REVIEW_CHANNEL, StackFactory, start_round

MODEL_KEY = "sk-secret-model-key-4c1e"
SIGNING_SECRET = "secret-signing-7d2a"
TRAINER_SECRET = "secret-trainer-9f0b"
DB_PASSWORD = "secret-db-password-5e8c"


@pytest.fixture
async def database_with_password(database_url: str, postgres_admin_url: str) -> AsyncIterator[str]:
    """This test's database reached as a role of its own, with a password."""
    role = f"amend_secret_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{DB_PASSWORD}' IN ROLE postgres")
        parts = urlsplit(database_url)
        netloc = f"{role}:{DB_PASSWORD}@{parts.hostname}:{parts.port or 5432}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def everything_in_the_ledger(ledger: Ledger) -> str:
    """Every row of every table, as text."""
    tables = await ledger.pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    )
    dump = []
    for table in tables:
        rows = await ledger.pool.fetch(f'SELECT t::text AS row FROM "{table["tablename"]}" t')
        dump += [row["row"] for row in rows]
    return "\n".join(dump)


async def test_no_secret_appears_in_logs_history_ledger_answers_or_slack(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    ledger: Ledger,
    database_with_password: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    async with stack_on(
        dev_server,
        database=database_with_password,
        model_api_key=MODEL_KEY,
        slack_signing_secret=SIGNING_SECRET,
        trainer_secret=SecretStr(TRAINER_SECRET),
    ) as stack:
        bot_token = stack.settings.slack_bot_token
        assert bot_token is not None
        secrets = {
            "model key": MODEL_KEY,
            "signing secret": SIGNING_SECRET,
            "trainer secret": TRAINER_SECRET,
            "database password": DB_PASSWORD,
            "bot token": bot_token.get_secret_value(),
            "operator API token": stack.operator_token,
        }
        await start_round(
            stack, "secret-scan", max_proposals=1, training={"poll_interval": "PT0.2S"}
        )
        slack = stack.slack_stand_in_url or ""
        [message] = await wait_for_proposals(slack, 1, wait_s=30)
        outsider = SimulatedReviewer(stack.gateway_url, SIGNING_SECRET, "U0MALLORY")
        answers.append((await outsider.click(message, "modify", channel_id=REVIEW_CHANNEL)).text)
        forger = SimulatedReviewer(stack.gateway_url, "a-guessed-secret", "U0ALICE")
        answers.append((await forger.click(message, "accept", channel_id=REVIEW_CHANNEL)).text)
        async with httpx.AsyncClient(base_url=stack.gateway_url) as http:
            wrong = await http.get("/api/rounds", headers={"Authorization": "Bearer nope"})
            answers.append(wrong.text)
        alice = SimulatedReviewer(stack.gateway_url, SIGNING_SECRET, "U0ALICE", slack_api_url=slack)
        decided = await decide_in_slack(alice, slack, message, "accept", channel_id=REVIEW_CHANNEL)
        answers.append(decided.text)
        handle = dev_server.client.get_workflow_handle("round-secret-scan", result_type=RoundResult)
        result = await handle.result()
        assert result.state is RoundState.completed
        history = (await handle.fetch_history()).to_json()
        async with httpx.AsyncClient(base_url=slack) as http:
            slack_text = json.dumps(
                [
                    (await http.get(f"/_standin/{what}")).json()
                    for what in ("messages", "ephemeral", "views")
                ]
            )

    places = {
        "logs": caplog.text,
        "workflow history": history,
        "ledger": await everything_in_the_ledger(ledger),
        "gateway answers": "\n".join(answers),
        "Slack": slack_text,
    }
    # The scan reads what the round really wrote and logged.
    assert "U0MALLORY is not a reviewer" in places["ledger"]
    assert "Slack request refused" in places["logs"]
    leaks = [
        f"{name} in {place}"
        for name, secret in secrets.items()
        for place, text in places.items()
        if secret in text
    ]
    assert leaks == []
