"""`amend doctor`: every dependency a deployment needs, checked, in one table.

Temporal (and its search attributes), PostgreSQL and its migrations, the model
server and what it offers (output mode, fine-tuning, Batch API, request ids),
Slack (`auth.test` and the review channel) and the trainer. Each row says what
was found and, where something is missing, what to do about it. Without a
model URL or Slack token it checks the stand-ins a running `amend dev` serves,
and says so. Exit 0 when nothing is missing, 1 otherwise (warnings do not
fail). Detecting the model's output modes costs up to three tiny completions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import asyncpg
import typer
from pydantic import BaseModel, SecretStr
from rich.markup import escape
from rich.table import Table
from slack_sdk.errors import SlackApiError

from worker.cli.render import EXIT_FAILED, JSON_HELP, console, emit_json
from worker.cli.services import run, settings
from worker.settings import Settings

if TYPE_CHECKING:
    from temporalio.client import Client

TIMEOUT_S = 15


class Health(StrEnum):
    """How a dependency stands: only `missing` makes the doctor exit non-zero."""

    ok = "ok"
    warn = "warn"
    missing = "missing"
    off = "off"
    """Optional and not configured."""


class Check(BaseModel):
    """One row of the table: a dependency, how it stands, what was seen, what to do."""

    dependency: str
    health: Health
    detail: str
    fix: str = ""

    @classmethod
    def ok(cls, dependency: str, detail: str) -> Check:
        """A dependency that is there, and what was seen of it."""
        return cls(dependency=dependency, health=Health.ok, detail=detail)

    @classmethod
    def missing(cls, dependency: str, detail: str, fix: str) -> Check:
        """A dependency that is not there, and what to do about it."""
        return cls(dependency=dependency, health=Health.missing, detail=detail, fix=fix)


async def _bounded(what: str, check: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    """A check that cannot hang the doctor: unreachable is a row, not a traceback."""
    try:
        return await asyncio.wait_for(check(), TIMEOUT_S)
    except TimeoutError:
        return [Check.missing(what, f"no answer in {TIMEOUT_S}s", "check that it runs and answers")]


async def check_temporal(s: Settings) -> list[Check]:
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest

    from worker.temporal_connection import connect_temporal
    from workflows.search import ROUND_SEARCH_ATTRIBUTES

    try:
        client: Client = await connect_temporal(s)
    except Exception as error:
        return [
            Check.missing(
                "Temporal",
                f"cannot reach {s.temporal_address}: {error}",
                "run `amend dev`, or set AMEND_TEMPORAL_ADDRESS to your cluster",
            )
        ]
    rows = [
        Check.ok(
            "Temporal",
            f"{s.temporal_address}, namespace {s.temporal_namespace}, "
            f"task queue {s.temporal_task_queue}",
        )
    ]
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=s.temporal_namespace)
    )
    known = set(listed.custom_attributes)
    lacking = [key.name for key in ROUND_SEARCH_ATTRIBUTES if key.name not in known]
    rows.append(
        Check(
            dependency="Temporal search attributes",
            health=Health.warn if lacking else Health.ok,
            detail=f"not registered: {', '.join(lacking)}" if lacking else "all registered",
            fix="rounds run without them; `temporal operator search-attribute create "
            "--name RoundState --type Keyword` (see the README)"
            if lacking
            else "",
        )
    )
    return rows


async def check_database(s: Settings) -> list[Check]:
    from ledger.migrate import shipped_migrations
    from worker.database import running_embedded_url

    url = s.database_url.get_secret_value() if s.database_url else None
    url = url or running_embedded_url(s.data_dir)
    if url is None:
        return [
            Check.missing(
                "PostgreSQL",
                f"no AMEND_DATABASE_URL, and no `amend dev` database in {s.data_dir}",
                "set AMEND_DATABASE_URL, or run `amend dev`",
            )
        ]
    try:
        connection = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError) as error:
        return [
            Check.missing(
                "PostgreSQL",
                f"cannot connect: {error}",
                "check AMEND_DATABASE_URL and that the server runs",
            )
        ]
    try:
        server = await connection.fetchval("SHOW server_version")
        try:
            rows = await connection.fetch("SELECT version FROM schema_migrations")
        except asyncpg.UndefinedTableError:
            rows = []
    finally:
        await connection.close()
    applied = {row["version"] for row in rows}
    pending = [m.version for m in shipped_migrations() if m.version not in applied]
    return [
        Check.ok("PostgreSQL", f"server {server}"),
        Check(
            dependency="migrations",
            health=Health.missing if pending else Health.ok,
            detail=f"not applied: {', '.join(pending)}"
            if pending
            else f"all {len(applied)} applied",
            fix="run `amend migrate`" if pending else "",
        ),
    ]


async def check_model(s: Settings) -> list[Check]:
    from temporalio.exceptions import ApplicationError

    from activities.model import Model
    from constitution.capabilities import ServerCapabilities
    from worker.runtime import model_client

    base_url = s.model_base_url or f"http://127.0.0.1:{s.stand_in_port_model}/v1"
    label = base_url if s.model_base_url else f"{base_url} (the stand-in of `amend dev`)"

    async with model_client(s, base_url) as client:
        model = Model(client, s.model_name, output_mode=s.model_output_mode)
        found: dict[str, ServerCapabilities] = {}
        try:
            for name in dict.fromkeys([s.model_name, s.grader_model]):
                found[name] = await model.capabilities.of(name)
        except ApplicationError as error:
            return [_model_unreachable(label, error.message)]
        except Exception as error:
            return [_model_unreachable(label, f"{type(error).__name__}: {error}")]
    first = found[s.model_name]
    rows = [Check.ok("model server", label)]
    for name, capabilities in found.items():
        modes = ", ".join(
            f"{mode}: {capabilities.evidence.get(mode, 'not probed')}"
            for mode in ("json_schema", "json_object", "tools")
        )
        chosen = capabilities.output_mode
        how = "set by AMEND_MODEL_OUTPUT_MODE" if capabilities.mode_from_settings else modes
        rows.append(
            Check(
                dependency=f"output mode ({name})",
                health=Health.ok if chosen else Health.missing,
                detail=f"{chosen or 'none'} ({how})",
                fix=""
                if chosen
                else "use a server or model with structured outputs, JSON mode or tool calling",
            )
        )
    trainer = bool(s.trainer_url)
    rows.append(
        Check(
            dependency="fine-tuning API",
            health=Health.ok if first.fine_tuning else (Health.warn if trainer else Health.missing),
            detail=first.evidence.get("fine_tuning", "?"),
            fix=""
            if first.fine_tuning
            else "rounds with training.backend: openai are refused at start; "
            + (
                "use training.backend: http"
                if trainer
                else "set AMEND_TRAINER_URL and use "
                "training.backend: http, or use a server with fine-tuning"
            ),
        )
    )
    rows.append(
        Check(
            dependency="Batch API",
            health=Health.ok if first.batch_api else Health.warn,
            detail=first.evidence.get("batch_api", "?"),
            fix="" if first.batch_api else "rounds with training.use_batch_api are refused",
        )
    )
    ids = "sent" if first.request_ids else "not sent: calls are counted by completions' own ids"
    rows.append(Check.ok("x-request-id", ids))
    return rows


def _model_unreachable(label: str, why: str) -> Check:
    return Check.missing(
        "model server",
        f"{label}: {why}",
        "set AMEND_MODEL_BASE_URL, AMEND_MODEL_API_KEY and AMEND_MODEL_NAME, "
        "or run `amend dev` for the stand-in",
    )


async def check_slack(s: Settings) -> list[Check]:
    from standins.slack.config import SlackStandInConfig
    from worker.runtime import slack_client

    stand_in = s.uses_stand_in_slack and not s.slack_api_url
    if stand_in:
        s = s.model_copy(
            update={
                "slack_api_url": f"http://127.0.0.1:{s.stand_in_port_slack}",
                "slack_bot_token": SecretStr(SlackStandInConfig().bot_token),
            }
        )
    where = f" (the stand-in of `amend dev` at {s.slack_api_url})" if stand_in else ""
    slack = slack_client(s)
    try:
        auth = await slack.auth_test()
    except SlackApiError as error:
        return [
            Check.missing(
                "Slack auth.test",
                f"{error.response.get('error')}{where}",
                "set AMEND_SLACK_BOT_TOKEN to the app's bot token (xoxb-...)",
            )
        ]
    except Exception as error:
        return [
            Check.missing(
                "Slack auth.test",
                f"cannot reach Slack{where}: {error}",
                "run `amend dev` for the stand-in, or check AMEND_SLACK_API_URL",
            )
        ]
    rows = [
        Check.ok(
            "Slack auth.test",
            f"team {auth.get('team')}, bot {auth.get('user')}{where}",
        )
    ]
    channel = s.slack_review_channel
    try:
        info = await slack.conversations_info(channel=channel)
    except SlackApiError as error:
        rows.append(
            Check.missing(
                "Slack review channel",
                f"{channel}: {error.response.get('error')}",
                "set AMEND_SLACK_REVIEW_CHANNEL to the channel id and invite the bot to it",
            )
        )
        return rows
    name = (info.get("channel") or {}).get("name", "?")
    rows.append(Check.ok("Slack review channel", f"{channel} (#{name})"))
    return rows


async def check_trainer(s: Settings) -> list[Check]:
    import httpx

    from activities.finetune import HttpTrainer

    if not s.trainer_url:
        return [
            Check(
                dependency="trainer",
                health=Health.off,
                detail="AMEND_TRAINER_URL unset: training.backend: http is unavailable",
            )
        ]
    async with httpx.AsyncClient(timeout=5) as http:
        unreachable = await HttpTrainer(http, s.trainer_url, None).unreachable()
    return [
        Check(
            dependency="trainer",
            health=Health.missing if unreachable else Health.ok,
            detail=unreachable or f"{s.trainer_url} answers",
            fix="start the trainer, or fix AMEND_TRAINER_URL" if unreachable else "",
        )
    ]


async def diagnose(s: Settings) -> list[Check]:
    """Every check, side by side: one slow dependency does not hold up the rest."""
    found = await asyncio.gather(
        _bounded("Temporal", lambda: check_temporal(s)),
        _bounded("PostgreSQL", lambda: check_database(s)),
        _bounded("model server", lambda: check_model(s)),
        _bounded("Slack auth.test", lambda: check_slack(s)),
        _bounded("trainer", lambda: check_trainer(s)),
    )
    return [row for rows in found for row in rows]


COLOURS = {Health.ok: "green", Health.warn: "yellow", Health.missing: "red", Health.off: "dim"}


def doctor(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """Check every dependency of a deployment and print one table with what to fix.

    Exits 1 when something is missing."""
    s = settings()
    rows = run(diagnose(s))
    if as_json:
        emit_json([row.model_dump() for row in rows])
    else:
        table = Table("dependency", "status", "found", "to fix", title="amend doctor")
        for row in rows:
            colour = COLOURS[row.health]
            table.add_row(
                escape(row.dependency),
                f"[{colour}]{row.health.value}[/{colour}]",
                escape(row.detail),
                escape(row.fix),
            )
        console.print(table)
    missing = [row.dependency for row in rows if row.health is Health.missing]
    if missing:
        if not as_json:
            console.print(f"[red]missing:[/red] {escape(', '.join(missing))}")
        raise typer.Exit(EXIT_FAILED)


__all__ = ["Check", "Health", "diagnose", "doctor"]
