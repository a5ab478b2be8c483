"""`amend doctor` on a running stack (the dev stack's wiring: Temporal dev
server, real PostgreSQL, the model and Slack stand-ins): one table of every
dependency, exit 0 when all is there, and 1 naming what is missing and what to
do when the model server has no fine-tuning, the database is not migrated and
the review channel does not exist."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from temporalio.testing import WorkflowEnvironment

from standins.model.config import ScriptedModelConfig
from tests.conftest import StackFactory, run_cli, stack_cli_env
from worker.cli import EXIT_FAILED

DEPENDENCIES = [
    "Temporal",
    "Temporal search attributes",
    "PostgreSQL",
    "migrations",
    "model server",
    "output mode (amend-proposer)",
    "fine-tuning API",
    "Batch API",
    "x-request-id",
    "Slack auth.test",
    "Slack review channel",
    "trainer",
]


async def test_the_doctor_prints_every_dependency_and_exits_0_on_a_healthy_stack(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, database_url: str
) -> None:
    async with stack_on(dev_server) as stack:
        env = stack_cli_env(stack, dev_server, database_url)
        table = await run_cli(env, "doctor")
        listed = await run_cli(env, "doctor", "--json")

    assert table.exit_code == 0, table.output
    for dependency in ["amend doctor", "json_schema", "C0AMENDREVIEW", *DEPENDENCIES]:
        assert dependency in table.output
    rows = {row["dependency"]: row for row in json.loads(listed.stdout)}
    assert list(rows) == DEPENDENCIES
    assert {row["health"] for row in rows.values()} <= {"ok", "off"}
    assert rows["output mode (amend-proposer)"]["detail"].startswith(
        "json_schema (json_schema: 200"
    )
    assert rows["trainer"]["health"] == "off"


async def test_the_doctor_exits_1_naming_what_is_missing_and_what_to_do(
    dev_server: WorkflowEnvironment,
    stack_on: StackFactory,
    database_url: str,
    empty_database_url: str,
) -> None:
    server = ScriptedModelConfig(fine_tuning=False, structured_outputs=False, request_ids=False)
    async with stack_on(dev_server, model_stand_in=server) as stack:
        env = {
            **stack_cli_env(stack, dev_server, database_url),
            "AMEND_DATABASE_URL": empty_database_url,
            "AMEND_SLACK_REVIEW_CHANNEL": "C0NOSUCHCHANNEL",
        }
        table = await run_cli(env, "doctor")
        listed = await run_cli(env, "doctor", "--json")

    assert table.exit_code == listed.exit_code == EXIT_FAILED
    assert "missing: migrations, fine-tuning API, Slack review channel" in table.output
    rows = {row["dependency"]: row for row in json.loads(listed.stdout)}
    assert rows["migrations"]["fix"] == "run `amend migrate`"
    assert rows["fine-tuning API"]["detail"] == "404 on /v1/fine_tuning/jobs"
    assert "set AMEND_TRAINER_URL" in rows["fine-tuning API"]["fix"]
    assert rows["Slack review channel"]["detail"] == "C0NOSUCHCHANNEL: channel_not_found"
    assert rows["output mode (amend-proposer)"]["health"] == "ok"
    assert rows["output mode (amend-proposer)"]["detail"].startswith(
        "json_object (json_schema: 400"
    )
    assert rows["x-request-id"]["detail"].startswith("not sent")


async def test_without_a_model_url_or_slack_token_the_doctor_checks_the_dev_stacks_stand_ins(
    dev_server: WorkflowEnvironment, stack_on: StackFactory, database_url: str
) -> None:
    async with stack_on(dev_server) as stack:
        env: dict[str, str | None] = {
            **stack_cli_env(stack, dev_server, database_url),
            "AMEND_MODEL_BASE_URL": None,
            "AMEND_MODEL_API_KEY": None,
            "AMEND_SLACK_API_URL": None,
            "AMEND_SLACK_BOT_TOKEN": None,
            "AMEND_STAND_IN_PORT_MODEL": str(urlsplit(stack.model_stand_in_url or "").port),
            "AMEND_STAND_IN_PORT_SLACK": str(urlsplit(stack.slack_stand_in_url or "").port),
        }
        listed = await run_cli(env, "doctor", "--json")

    assert listed.exit_code == 0, listed.output
    rows = {row["dependency"]: row for row in json.loads(listed.stdout)}
    assert rows["model server"]["detail"].endswith("(the stand-in of `amend dev`)")
    assert "(the stand-in of `amend dev` at http://127.0.0.1:" in rows["Slack auth.test"]["detail"]
