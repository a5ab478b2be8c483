"""What must hold after the faults, each check a function of the records.

The suite gathers `Facts` (from the ledger, the Slack and model stand-ins,
`amend audit verify` and its own click records) once the rounds are over or
its time is up; every check here reads only them, so each can be shown to
fail on a crafted bad record set (tests/unit/test_chaos_invariants.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bench.chaos.clicks import Click

# States in which a round's review is over, so its summary is due.
REVIEW_ENDED = {
    "amending",
    "generating_data",
    "training",
    "evaluating",
    "completed",
    "completed_unchanged",
    "gate_failed",
    "cancelled",
}
TERMINAL = {"completed", "completed_unchanged", "gate_failed", "failed", "cancelled"}


@dataclass
class RoundFacts:
    """One round as the suite found it at the end."""

    round_id: str
    expected: str  # the end state it must reach
    state: str  # where it is: the workflow's state, or the ledger's when that cannot be read
    waiting: str | None = None  # the reason it shows for waiting (waiting on…, blocked)
    error: str | None = None
    proposals: list[str] = field(default_factory=list)  # the ledger's proposals of the round
    decided: set[str] = field(default_factory=set)  # proposals whose decision was acknowledged
    votes: dict[str, int] = field(default_factory=dict)  # acknowledged votes per proposal
    decisions: dict[str, int] = field(default_factory=dict)  # proposal -> decision rows
    settlings: dict[str, int] = field(default_factory=dict)  # proposal -> settling transitions
    sequences: list[int] = field(default_factory=list)  # transition sequence numbers, in order
    chain_problems: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)  # proposal -> live Slack messages
    deleted: set[str] = field(default_factory=set)  # proposals whose message the suite deleted
    summaries: int = 0  # live round-summary messages
    fine_tune_jobs: int = 0
    refused_clicks: int = 0  # clicks by someone not allowed to decide
    refusals_recorded: int = 0  # their rows in decision_attempts


@dataclass
class Facts:
    rounds: list[RoundFacts]
    clicks: list[Click]
    audit_exit: int | None
    audit_output: str = ""


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def end_states(facts: Facts) -> Check:
    """Every round at its right end state, or waiting where everyone can see why
    (and can resume): never failed, never silently stuck."""
    bad = []
    for r in facts.rounds:
        if r.state == r.expected:
            continue
        if r.state not in TERMINAL and r.waiting:
            continue
        why = r.error or r.waiting or "no reason shown"
        bad.append(f"{r.round_id}: {r.state} ({why[:120]})")
    return Check("round end states", not bad, "; ".join(bad) or "all at their end state")


def decisions_lost(facts: Facts) -> Check:
    """Every acknowledged decision is in the ledger and settled its proposal
    (one accept or reject settles one under the suite's review policy)."""
    lost = [
        f"{r.round_id}/{p}"
        + (" (no decision row)" if not r.decisions.get(p) else " (never settled)")
        for r in facts.rounds
        for p in sorted(r.decided)
        if not r.decisions.get(p) or not r.settlings.get(p)
    ]
    return Check("0 decisions lost", not lost, ", ".join(lost) or "none lost")


def decisions_twice(facts: Facts) -> Check:
    """No decision recorded twice (more rows than acknowledged votes), no
    proposal settled twice."""
    twice = [
        f"{r.round_id}/{p}"
        for r in facts.rounds
        for p in sorted(set(r.decisions) | set(r.settlings))
        if r.decisions.get(p, 0) > max(1, r.votes.get(p, 1)) or r.settlings.get(p, 0) > 1
    ]
    return Check("0 recorded twice", not twice, ", ".join(twice) or "none twice")


def gaps(facts: Facts) -> Check:
    """Each round's transitions run 1..n and its hash chain is unbroken."""
    bad = []
    for r in facts.rounds:
        if r.sequences != list(range(1, len(r.sequences) + 1)):
            bad.append(f"{r.round_id}: sequences {r.sequences}")
        if r.chain_problems:
            bad.append(f"{r.round_id}: {'; '.join(r.chain_problems)}")
    return Check("0 gaps", not bad, "; ".join(bad) or "every chain whole")


def one_message_per_proposal(facts: Facts) -> Check:
    """Exactly one live Slack message per proposal (a proposal whose message was
    deleted may have its fresh one, or none while its round shows it blocked)."""
    bad = []
    for r in facts.rounds:
        for p in r.proposals:
            count = r.messages.get(p, 0)
            allowed = {0, 1} if p in r.deleted else {1}
            if count not in allowed:
                bad.append(f"{r.round_id}/{p}: {count}")
    return Check("one Slack message per proposal", not bad, ", ".join(bad) or "one each")


def one_summary_per_round(facts: Facts) -> Check:
    """Exactly one summary once a round's review ended; none twice ever."""
    bad = []
    for r in facts.rounds:
        want = {1} if r.state in REVIEW_ENDED else {0, 1}
        if r.summaries not in want:
            bad.append(f"{r.round_id}: {r.summaries} in {r.state}")
    return Check("one Slack summary per round", not bad, ", ".join(bad) or "one each")


def refusals_recorded(facts: Facts) -> Check:
    """Every click by someone not allowed to decide is in decision_attempts."""
    bad = [
        f"{r.round_id}: {r.refusals_recorded} of {r.refused_clicks}"
        for r in facts.rounds
        if r.refusals_recorded < r.refused_clicks
    ]
    return Check("every refusal recorded", not bad, ", ".join(bad) or "all recorded")


def clicks_answered(facts: Facts) -> Check:
    """Every click answered 200 within Slack's 3 s (by one of Slack's attempts)."""
    late = [c for c in facts.clicks if not c.acknowledged]
    detail = ", ".join(f"{c.round_id}/{c.proposal_id} {c.action} by {c.user}" for c in late[:8])
    more = f" (+{len(late) - 8} more)" if len(late) > 8 else ""
    return Check(
        "every click answered within 3 s",
        not late,
        (detail + more) or f"{len(facts.clicks)} answered",
    )


def modals_opened(facts: Facts) -> Check:
    """Every Modify…/Reject… click that reached a gateway opened its modal
    while the trigger id lived; clicks that met a dead gateway are
    counted apart (nothing can open theirs; the reviewer clicks again)."""
    asked = [c for c in facts.clicks if c.modal_opened is not None]
    owed = [c for c in asked if not c.met_a_dead_gateway]
    failed = [c for c in owed if not c.modal_opened]
    detail = ", ".join(f"{c.round_id}/{c.proposal_id} {c.action}" for c in failed[:8])
    unreached = len(asked) - len(owed)
    apart = f"; {unreached} met a dead gateway" if unreached else ""
    return Check(
        "modals opened within 3 s",
        not failed,
        (detail or f"{sum(1 for c in owed if c.modal_opened)} of {len(owed)} opened") + apart,
    )


def one_fine_tune_per_round(facts: Facts) -> Check:
    """At most one fine-tune job per round."""
    bad = [f"{r.round_id}: {r.fine_tune_jobs}" for r in facts.rounds if r.fine_tune_jobs > 1]
    return Check(
        "at most one fine-tune job per round", not bad, ", ".join(bad) or "at most one each"
    )


def audit_verifies(facts: Facts) -> Check:
    """`amend audit verify` finds every chain intact (exit 0)."""
    ok = facts.audit_exit == 0
    detail = "exit 0" if ok else f"exit {facts.audit_exit}: {facts.audit_output.strip()[:200]}"
    return Check("amend audit verify", ok, detail)


CHECKS: list[Callable[[Facts], Check]] = [
    end_states,
    decisions_lost,
    decisions_twice,
    gaps,
    one_message_per_proposal,
    one_summary_per_round,
    refusals_recorded,
    clicks_answered,
    modals_opened,
    one_fine_tune_per_round,
    audit_verifies,
]


def check_all(facts: Facts) -> list[Check]:
    return [check(facts) for check in CHECKS]
