"""The chaos table: what was injected, where each round ended, what became of
the clicks, and each invariant with its verdict. Printed, and written to
bench/CHAOS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench.chaos.invariants import Check
from bench.chaos.scenario import Options, Outcome

# Each fault and how many times a run injects it (worker kills: as the options say).
PLANNED: dict[str, int | None] = {
    "worker SIGKILL": None,
    "Temporal restart in review": 1,
    "Temporal restart in retraining": 1,
    "PostgreSQL stopped": 1,
    "gateway SIGKILL": 1,
    "slack stand-in down": 1,
    "model stand-in down": 1,
    "Slack 429/5xx": 1,
    "model 429/5xx": 1,
    "Slack message deleted": 1,
}


def planned(options: Options) -> dict[str, int]:
    return {k: options.worker_kills if v is None else v for k, v in PLANNED.items()}


def coverage(outcome: Outcome, options: Options) -> Check:
    """Every planned fault was injected (a fault never reached proves nothing)."""
    counts = outcome.log.counts()
    short = [
        f"{k}: {counts.get(k, 0)} of {n}"
        for k, n in planned(options).items()
        if counts.get(k, 0) < n
    ]
    if outcome.clicks_in_continue_as_new == 0:
        short.append("no click landed during a continue-as-new")
    return Check("every planned fault injected", not short, "; ".join(short) or "all injected")


def render(outcome: Outcome, checks: list[Check], options: Options, title: str) -> str:
    facts = outcome.facts
    counts = outcome.log.counts()
    lines = [
        f"## {title}",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()} ({os.cpu_count()} cores), "
        f"{len(outcome.plans)} rounds, seed {options.seed}, outages PostgreSQL "
        f"{options.postgres_outage_s:g} s / Slack {options.slack_outage_s:g} s / model "
        f"{options.model_outage_s:g} s, run {outcome.seconds:.0f} s.",
        "",
        "### Faults injected",
        "",
        "| fault | injected | planned |",
        "|---|---|---|",
    ]
    for kind, n in planned(options).items():
        lines.append(f"| {kind} | {counts.get(kind, 0)} | {n} |")
    lines.append(
        f"| clicks during a continue-as-new | {outcome.clicks_in_continue_as_new} "
        f"({outcome.continued_as_new} continues-as-new) | >= 1 |"
    )
    if outcome.unplanned_exits:
        exits = ", ".join(f"{k} {v}" for k, v in outcome.unplanned_exits.items())
        lines.append(f"| processes that exited on their own (restarted) | {exits} | - |")
    lines += [
        "",
        "### Rounds",
        "",
        "| round | end state (expected) | shown reason | proposals | decisions (acked) | "
        "Slack messages per proposal | summaries | fine-tune jobs | refusals recorded |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in facts.rounds:
        reason = (r.waiting or r.error or "").replace("|", "/").replace("\n", " ")[:90]
        per = ",".join(str(r.messages.get(p, 0)) for p in r.proposals) or "-"
        lines.append(
            f"| {r.round_id} | {r.state} ({r.expected}) | {reason} | {len(r.proposals)} | "
            f"{sum(r.decisions.values())} ({len(r.decided)}) | {per} | {r.summaries} | "
            f"{r.fine_tune_jobs} | {r.refusals_recorded} of {r.refused_clicks} |"
        )
    clicks = facts.clicks
    acked = sum(1 for c in clicks if c.acknowledged)
    first = sum(1 for c in clicks if c.attempts and c.attempts[0].answered)
    retried = sum(1 for c in clicks if len(c.attempts) > 1)
    modals = [c for c in clicks if c.modal_opened is not None and not c.met_a_dead_gateway]
    in_ledger = sum(sum(r.decisions.values()) + r.refusals_recorded for r in facts.rounds)
    decisions = sum(sum(r.decisions.values()) for r in facts.rounds)
    duplicates = sum(
        max(0, n - max(1, r.votes.get(p, 1))) for r in facts.rounds for p, n in r.decisions.items()
    ) + sum(max(0, n - 1) for r in facts.rounds for n in r.settlings.values())
    gaps = sum(
        1
        for r in facts.rounds
        if r.sequences != list(range(1, len(r.sequences) + 1)) or r.chain_problems
    )
    lines += [
        "",
        "### Clicks and the ledger",
        "",
        "| clicks sent | acknowledged within 3 s | first try within 3 s | retried by Slack | "
        "in the ledger (decisions + refusals) | duplicates | rounds with gaps | "
        "modals opened within 3 s (clicks that reached a gateway) | "
        "`amend audit verify` |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {len(clicks)} | {acked} | {first} | {retried} | {in_ledger} ({decisions} + "
        f"{in_ledger - decisions}) | {duplicates} | {gaps} | "
        f"{sum(1 for c in modals if c.modal_opened)} of {len(modals)} | exit {facts.audit_exit} |",
        "",
        "### Invariants",
        "",
        "| invariant | verdict | detail |",
        "|---|---|---|",
    ]
    for check in checks:
        detail = check.detail.replace("|", "/").replace("\n", " ")
        lines.append(f"| {check.name} | {'PASS' if check.ok else 'FAIL'} | {detail} |")
    if outcome.notes:
        lines += [
            "",
            "Scenes that did not find their rounds where they wanted them: "
            + "; ".join(outcome.notes)
            + ".",
        ]
    return "\n".join(lines) + "\n"


HEADER = """# Chaos suite results

`make chaos` (`python -m bench.chaos`) runs the stack as separate processes,
injects the faults below and checks the invariants; README.md (Testing) says
what each means. The latest run is first.
"""


def write(path: Path, table: str, keep_earlier: bool = True) -> None:
    """Put `table` first in `path`, keeping the earlier tables below it."""
    earlier = ""
    if keep_earlier and path.exists():
        text = path.read_text()
        earlier = text.split("\n## ", 1)[1] if "\n## " in text else ""
        earlier = ("\n## " + earlier) if earlier else ""
    path.write_text(HEADER + "\n" + table + earlier)
