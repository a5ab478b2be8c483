"""`amend round`: start, inspect, follow and steer training rounds."""

from __future__ import annotations

import asyncio
import json
import re
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.markup import escape

from constitution import (
    TERMINAL_ROUND_STATES,
    DecisionKind,
    DecisionRequest,
    RoundSpec,
    RoundState,
)
from constitution.contracts import OperatorRequest, RoundStatus
from ledger.chain import TransitionRow
from ledger.dashboards import LARGEST_OFFSET, LARGEST_VERSION, Dashboards, RoundPage
from ledger.store import Ledger
from worker.cli.render import (
    AS_HELP,
    EXIT_FAILED,
    EXIT_USAGE,
    JSON_HELP,
    ShownRound,
    console,
    emit_json,
    fail,
    print_status,
    rounds_table,
    timeline_table,
    watch_line,
    watch_view,
)
from worker.cli.services import (
    on_ledger,
    operator_name,
    read_input,
    run,
    send_order,
    settings,
    temporal_client,
)

if TYPE_CHECKING:
    from temporalio.client import Client

app = typer.Typer(help="Start, inspect, follow and steer training rounds.", no_args_is_help=True)


def load_spec(path: Path) -> dict[str, Any]:
    text = read_input(path)
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise fail(
            f"{path} is not valid {path.suffix.lstrip('.') or 'JSON'}: {error}", EXIT_USAGE
        ) from error
    if not isinstance(data, dict):
        raise fail(f"{path}: a round spec is a mapping of fields", EXIT_USAGE)
    return data


def spec_line(path: Path, loc: tuple[str | int, ...]) -> int | None:
    """The line of `path` where the field at `loc` is written (JSON is read
    as YAML for this), or None when the field is not in the file."""
    try:
        node: yaml.Node | None = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((kv for kv in node.value if kv[0].value == str(part)), None)
            if found is None:
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@app.command("start")
def round_start(
    round_id: Annotated[str | None, typer.Option("--id", help="Round id (a-z, 0-9, -).")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Spec file (YAML or JSON).")
    ] = None,
    reviewer: Annotated[list[str] | None, typer.Option(help="Slack user id (repeatable).")] = None,
    reviewer_group: Annotated[
        list[str] | None,
        typer.Option(help="Slack user group id (S...) whose members may decide (repeatable)."),
    ] = None,
    max_proposals: Annotated[
        int | None, typer.Option(min=1, max=50, help="Most proposals reviewers see (1-50).")
    ] = None,
    evidence: Annotated[
        list[str] | None,
        typer.Option(help="Evidence JSONL file (repeatable); checked before the round starts."),
    ] = None,
    evidence_from_round: Annotated[
        str | None,
        typer.Option(
            help="Earlier round whose decisions become reviewer-feedback evidence, and whose "
            "evaluation failures become evaluation_failure evidence."
        ),
    ] = None,
    reminder_hours: Annotated[
        float | None, typer.Option(min=0.001, help="Hours between reminders to reviewers.")
    ] = None,
    override_preflight: Annotated[
        str | None,
        typer.Option(
            "--override-preflight",
            metavar="REASON",
            help="Start even if the training backend's check at round start fails; the "
            "reason is recorded with your name.",
        ),
    ] = None,
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Start a round from a spec file, flags, or both (flags win). The operator is recorded
    as the one who started it.

    Evidence files are read here before the round starts (a missing or malformed one is
    refused, exit 2) and passed on as absolute paths, which the worker must be able to read;
    an earlier round named for evidence must be in the ledger. It then waits (up to half a
    minute) for the round's preflight: a round whose training backend cannot run (no
    fine-tuning API, no trainer) is refused before anyone reviews it, and this exits 1 with
    the reason."""
    data: dict[str, Any] = load_spec(spec_file) if spec_file else {}
    overrides = {
        "round_id": round_id,
        "reviewers": reviewer or None,
        "reviewer_groups": reviewer_group or None,
        "max_proposals": max_proposals,
        "evidence_files": [str(Path(e).resolve()) for e in evidence] if evidence else None,
        "evidence_from_round": evidence_from_round,
        "reminder_interval": timedelta(hours=reminder_hours) if reminder_hours else None,
        "requested_by": operator_name(actor),
        "preflight_override": override_preflight,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        spec = RoundSpec.model_validate(data)
    except ValidationError as error:
        lines = []
        for e in error.errors():
            where = spec_line(spec_file, e["loc"]) if spec_file else None
            at = f"{spec_file} line {where}: " if where else ""
            lines.append(f"  {at}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
        raise fail("invalid round spec:\n" + "\n".join(lines), EXIT_USAGE) from error
    check_evidence(spec)
    s = settings()
    spec = spec.with_outage_patience(s.outage_patience)

    async def main() -> RoundStatus | None:
        from workflows.client import RoundExists, past_preflight, start_round

        client = await temporal_client(s)
        try:
            await start_round(client, spec, s.temporal_task_queue)
        except RoundExists as error:
            raise fail(str(error)) from error
        return await past_preflight(client, spec.round_id)

    status = run(main())
    preflight = status.preflight if status else None
    if as_json:
        emit_json(
            {
                "round_id": spec.round_id,
                "workflow_id": spec.workflow_id,
                "state": status.state if status else None,
                "preflight": preflight,
            }
        )
    elif preflight is None:
        console.print(
            f"started round {spec.round_id} (workflow {spec.workflow_id}); its preflight "
            f"has not answered yet: see `amend round show {spec.round_id}`"
        )
    elif preflight.overridden_by:
        problems = escape("; ".join(preflight.problems))
        console.print(
            f"started round {spec.round_id} (workflow {spec.workflow_id}); preflight "
            f"overridden by {escape(preflight.overridden_by)}: {problems}"
        )
    elif preflight.passed:
        console.print(f"started round {spec.round_id} (workflow {spec.workflow_id})")
    if status is not None and status.state is RoundState.failed:
        raise fail(f"round {spec.round_id} refused at start: {status.error}")


def check_evidence(spec: RoundSpec) -> None:
    """Refuse a round whose evidence cannot be read, before it starts (exit 2).

    The worker reads the same files with the same parser when the round
    starts; finding a bad one here costs the operator no failed round. Paths
    from a spec file are read relative to where the command runs.
    """
    from activities.evidence import read_evidence_files

    problems = read_evidence_files(spec.evidence_paths)[1]
    if problems:
        raise fail("bad evidence, the round was not started:\n" + "\n".join(problems), EXIT_USAGE)
    earlier = spec.evidence_from_round
    if earlier is None:
        return

    async def find(ledger: Ledger, __: Dashboards) -> bool:
        return await ledger.get_round(earlier) is not None

    if not on_ledger(find):
        raise fail(
            f"--evidence-from-round {earlier}: no such round in the ledger; "
            "the round was not started",
            EXIT_USAGE,
        )


ROUND_ID_HELP = "The round's id."


@app.command("show")
def round_show(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show a round's state and each proposal: the current and proposed text as a diff, the
    rationale, the evidence it rests on, what the checks found, and who decided it."""
    from workflows.client import round_status

    s = settings()
    status = run(send_order(s, lambda client: round_status(client, round_id)))
    if as_json:
        emit_json(status)
        return
    if not status.proposals:
        print_status(ShownRound(status))
        return
    cited = sorted({e for p in status.proposals for e in p.proposal.draft.evidence})

    async def context(ledger: Ledger, __: Dashboards) -> ShownRound:
        base = await ledger.get_version(status.base_version) if status.base_version else None
        evidence = await ledger.evidence_summaries(round_id, cited)
        failures = await ledger.evaluation_failures(round_id) if status.evaluation else []
        return ShownRound(status, base, evidence, failures)

    print_status(on_ledger(context))


@app.command("timeline")
def round_timeline(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows as JSON, with their hashes.")
    ] = False,
) -> None:
    """Print a round's ledger rows, oldest first: every transition, who made it and why."""

    async def main(ledger: Ledger, __: Dashboards) -> list[TransitionRow]:
        if await ledger.get_round(round_id) is None:
            raise fail(f"no round {round_id} in the ledger")
        return await ledger.timeline(round_id)

    rows = on_ledger(main)
    if as_json:
        emit_json(rows)
        return
    console.print(timeline_table(rows, console.width))


def parse_since(value: str | None) -> datetime | None:
    """`7d`, `12h`, `30m` ago, or an ISO date or time (UTC unless it says)."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)([dhm])", value.strip())
    if match:
        amount, unit = int(match[1]), match[2]
        delta = {"d": timedelta(days=amount), "h": timedelta(hours=amount)}.get(
            unit, timedelta(minutes=amount)
        )
        return datetime.now(UTC) - delta
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise fail(
            f"--since {value!r}: expected 7d, 12h, 30m or an ISO date such as 2026-05-01",
            EXIT_USAGE,
        ) from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("list")
def round_list(
    state: Annotated[RoundState | None, typer.Option(help="Only rounds in this state.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Started since: 7d, 12h, 30m or an ISO date.")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(min=1, max=LARGEST_VERSION, help="Amending or making this version."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rounds per page.")] = 50,
    offset: Annotated[
        int, typer.Option(min=0, max=LARGEST_OFFSET, help="Rounds to skip (paging).")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """List rounds from the ledger, newest first."""
    started = parse_since(since)

    async def main(_: Ledger, dashboards: Dashboards) -> RoundPage:
        return await dashboards.rounds(
            state=state.value if state else None,
            since=started,
            version=version,
            limit=limit,
            offset=offset,
        )

    page = on_ledger(main)
    if as_json:
        emit_json(page)
        return
    console.print(rounds_table(page.rounds))
    console.print(f"{len(page.rounds)} of {page.total} rounds (offset {page.offset})")


@app.command("watch")
def round_watch(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 2.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON status per line, on each change.")
    ] = False,
) -> None:
    """Follow a round until it ends: its state, proposals and the progress of long work.
    Exits 0 when it completes, 1 when it fails, is held back by the gate or is cancelled.

    On a terminal it redraws one view; otherwise (a pipe, a log file) it prints one line
    per change."""
    from rich.live import Live

    s = settings()
    live_view = console.is_terminal and not as_json

    async def main() -> RoundStatus:
        from workflows.client import round_status

        async def look(client: Client) -> RoundStatus:
            return await round_status(client, round_id)

        last = ""
        status = await send_order(s, look)
        with Live(watch_view(status), console=console) if live_view else nullcontext() as live:
            while True:
                current = status.model_dump_json() if as_json else watch_line(status)
                if current != last:
                    last = current
                    if live is not None:
                        live.update(watch_view(status))
                    else:
                        typer.echo(current)
                if status.state in TERMINAL_ROUND_STATES:
                    return status
                await asyncio.sleep(interval)
                status = await send_order(s, look)

    status = run(main())
    if status.state not in (RoundState.completed, RoundState.completed_unchanged):
        raise typer.Exit(EXIT_FAILED)


@app.command("cancel")
def round_cancel(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    reason: Annotated[str, typer.Option(help="Why; recorded with the cancellation.")],
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Cancel an active round: pending proposals are withdrawn and their Slack
    messages updated. A round that has ended is refused (exit 1)."""
    from workflows.client import cancel_round

    order = OperatorRequest(actor=operator_name(actor), reason=reason)
    s = settings()
    result = run(send_order(s, lambda client: cancel_round(client, round_id, order)))
    if as_json:
        emit_json(result)
    else:
        console.print(f"round {escape(round_id)} is {result.state.value}")


@app.command("repost")
def round_repost(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    reason: Annotated[str, typer.Option(help="Why; recorded with each re-post.")] = "re-posted",
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Post a round's pending proposals to Slack again (a message was lost or the channel
    changed). Decisions on the old messages still count."""
    from workflows.client import repost_round

    order = OperatorRequest(actor=operator_name(actor), reason=reason)
    s = settings()
    count = run(send_order(s, lambda client: repost_round(client, round_id, order)))
    if as_json:
        emit_json({"round_id": round_id, "reposted": count})
    else:
        console.print(f"re-posted {count} pending proposal{'s' if count != 1 else ''}")


@app.command("resume")
def round_resume(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    reason: Annotated[str, typer.Option(help="Why; recorded with the resume.")] = "",
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Re-run a failed round from the stage after its last completed one (dataset,
    fine-tune, evaluation), keeping its version, dataset and a succeeded fine-tune job;
    reviewers are not asked again. Refused (exit 1) unless the round failed after its
    review adopted amendments, or while it is running again."""
    from workflows.client import resume_round

    order = OperatorRequest(actor=operator_name(actor), reason=reason)
    s = settings()
    resumed = run(
        send_order(s, lambda client: resume_round(client, round_id, order, s.temporal_task_queue))
    )
    if as_json:
        emit_json(resumed)
    else:
        console.print(
            f"round {escape(round_id)} resumed at {resumed.stage.value}; "
            f"follow it with `amend round watch {escape(round_id)}`"
        )


@app.command("retry-slack")
def round_retry_slack(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Tell a round blocked on Slack to try again now, after fixing what blocked it (a
    channel, a token), instead of at its next retry interval."""
    from workflows.client import retry_slack

    s = settings()
    run(send_order(s, lambda client: retry_slack(client, round_id)))
    if as_json:
        emit_json({"round_id": round_id, "status": "retrying Slack"})
    else:
        console.print(f"round {escape(round_id)} is retrying Slack now")


@app.command("decide")
def round_decide(
    round_id: Annotated[str, typer.Argument(help=ROUND_ID_HELP)],
    proposal_id: Annotated[str, typer.Argument(help="The proposal's id (see `round show`).")],
    kind: Annotated[DecisionKind, typer.Argument(help="accept, reject or modify.")],
    reason: Annotated[str, typer.Option(help="Why the operator overrides the reviewers.")],
    text: Annotated[str | None, typer.Option(help="The edited text (modify).")] = None,
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Decide a proposal as an operator, in the reviewers' stead. The decision is recorded
    as an override with the operator's name and reason."""
    from workflows.client import override_decision

    try:
        request = DecisionRequest(
            proposal_id=proposal_id,
            kind=kind,
            reviewer=operator_name(actor),
            text=text,
            comment=reason,
            override=True,
        )
    except ValidationError as error:
        raise fail(error.errors()[0]["msg"], EXIT_USAGE) from error
    s = settings()
    outcome = run(send_order(s, lambda client: override_decision(client, round_id, request)))
    if as_json:
        emit_json(outcome)
    else:
        console.print(f"{escape(outcome.message)} (operator override)")
