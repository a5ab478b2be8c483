"""The chaos suite's invariant checks (bench/chaos/invariants.py): each passes
on a run where everything held and fails on a record set crafted to break
exactly it. The suite itself runs only under `make chaos`."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from bench.chaos import invariants
from bench.chaos.clicks import Attempt, Click
from bench.chaos.invariants import Facts, RoundFacts


def healthy() -> Facts:
    """Two rounds that ended as they should, every click answered in time."""
    rounds = [
        RoundFacts(
            round_id=rid,
            expected="completed",
            state="completed",
            proposals=[f"{rid}-p1", f"{rid}-p2"],
            decided={f"{rid}-p1", f"{rid}-p2"},
            decisions={f"{rid}-p1": 1, f"{rid}-p2": 1},
            settlings={f"{rid}-p1": 1, f"{rid}-p2": 1},
            sequences=[1, 2, 3, 4],
            messages={f"{rid}-p1": 1, f"{rid}-p2": 1},
            summaries=1,
            fine_tune_jobs=1,
            refused_clicks=1,
            refusals_recorded=1,
        )
        for rid in ("r1", "r2")
    ]
    clicks = [
        Click("r1", "r1-p1", "U0SIMALICE", "accept", 0.0, [Attempt(0, 200, 0.2, "pending")]),
        Click(
            "r1", "r1-p2", "U0SIMBOB", "modify", 0.0, [Attempt(0, 200, 0.3, "opened")], True, "t"
        ),
    ]
    return Facts(rounds, clicks, audit_exit=0)


def test_every_check_passes_on_a_run_where_everything_held() -> None:
    assert [c.name for c in invariants.check_all(healthy()) if not c.ok] == []


def _failed_round(f: Facts) -> None:
    f.rounds[0].state = "failed"
    f.rounds[0].error = "model unreachable"


def _stuck_silently(f: Facts) -> None:
    f.rounds[0].state = "in_review"


def _lost(f: Facts) -> None:
    del f.rounds[0].decisions["r1-p1"]


def _never_settled(f: Facts) -> None:
    del f.rounds[0].settlings["r1-p2"]


def _twice(f: Facts) -> None:
    f.rounds[1].decisions["r2-p1"] = 2


def _gap(f: Facts) -> None:
    f.rounds[0].sequences = [1, 2, 4]


def _broken_chain(f: Facts) -> None:
    f.rounds[1].chain_problems = ["sequence 3: hash does not match"]


def _posted_twice(f: Facts) -> None:
    f.rounds[0].messages["r1-p1"] = 2


def _summary_twice(f: Facts) -> None:
    f.rounds[1].summaries = 2


def _refusal_unrecorded(f: Facts) -> None:
    f.rounds[0].refusals_recorded = 0


def _click_unanswered(f: Facts) -> None:
    f.clicks[0].attempts = [Attempt(n, None, 3.0, error="ReadTimeout") for n in range(4)]


def _click_answered_late(f: Facts) -> None:
    f.clicks[0].attempts = [Attempt(0, 200, 3.4, "pending")]


def _modal_not_opened(f: Facts) -> None:
    f.clicks[1].modal_opened = False


def _modal_not_opened_by_a_live_gateway_that_answered_late(f: Facts) -> None:
    f.clicks[1].modal_opened = False
    f.clicks[1].attempts = [
        Attempt(0, None, 3.0, error="ReadTimeout"),
        Attempt(1, 200, 0.2, "opened"),
    ]


def _two_fine_tunes(f: Facts) -> None:
    f.rounds[0].fine_tune_jobs = 2


def _audit_fails(f: Facts) -> None:
    f.audit_exit = 1
    f.audit_output = "r1: sequence 2 altered"


BREAKS: list[tuple[Callable[[Facts], None], str]] = [
    (_failed_round, "round end states"),
    (_stuck_silently, "round end states"),
    (_lost, "0 decisions lost"),
    (_never_settled, "0 decisions lost"),
    (_twice, "0 recorded twice"),
    (_gap, "0 gaps"),
    (_broken_chain, "0 gaps"),
    (_posted_twice, "one Slack message per proposal"),
    (_summary_twice, "one Slack summary per round"),
    (_refusal_unrecorded, "every refusal recorded"),
    (_click_unanswered, "every click answered within 3 s"),
    (_click_answered_late, "every click answered within 3 s"),
    (_modal_not_opened, "modals opened within 3 s"),
    (_modal_not_opened_by_a_live_gateway_that_answered_late, "modals opened within 3 s"),
    (_two_fine_tunes, "at most one fine-tune job per round"),
    (_audit_fails, "amend audit verify"),
]


@pytest.mark.parametrize(("spoil", "check"), BREAKS, ids=[b[0].__name__ for b in BREAKS])
def test_each_check_fails_on_the_record_set_that_breaks_it_and_only_it(
    spoil: Callable[[Facts], None], check: str
) -> None:
    facts = copy.deepcopy(healthy())
    spoil(facts)
    failed = [c.name for c in invariants.check_all(facts) if not c.ok]
    assert failed == [check]


def test_a_round_waiting_where_everyone_sees_why_is_not_a_failure() -> None:
    facts = healthy()
    facts.rounds[0].state = "generating_data"
    facts.rounds[0].waiting = "waiting on model: connection refused, retrying"
    facts.rounds[0].summaries = 1
    assert invariants.end_states(facts).ok


def test_a_deleted_proposal_message_may_be_replaced_or_gone_but_not_doubled() -> None:
    facts = healthy()
    facts.rounds[0].deleted = {"r1-p1"}
    facts.rounds[0].messages["r1-p1"] = 0
    assert invariants.one_message_per_proposal(facts).ok
    facts.rounds[0].messages["r1-p1"] = 2
    assert not invariants.one_message_per_proposal(facts).ok


def test_a_modal_click_that_met_a_killed_gateway_is_counted_apart_not_failed() -> None:
    facts = copy.deepcopy(healthy())
    facts.clicks[1].modal_opened = False
    facts.clicks[1].attempts = [
        Attempt(0, None, 0.3, error="RemoteProtocolError"),
        Attempt(1, 200, 0.2, "opened"),
    ]
    [check] = [c for c in invariants.check_all(facts) if c.name == "modals opened within 3 s"]
    assert check.ok
    assert "1 met a dead gateway" in check.detail
