"""The round and proposal lifecycles of DESIGN §3, as specifications of
`constitution.lifecycle`: which moves are allowed, which are refused and how."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from enum import StrEnum
from itertools import pairwise
from typing import TypeVar

import pytest

from constitution.contracts import Dataset, ProposalStatus, RoundStatus
from constitution.lifecycle import (
    PROPOSAL_TRANSITIONS,
    RETRAINING_STAGES,
    ROUND_TRANSITIONS,
    SETTLED_PROPOSAL_STATES,
    TERMINAL_ROUND_STATES,
    IllegalTransition,
    ProposalState,
    RoundState,
    advance_proposal,
    advance_round,
    resume_round,
)
from constitution.models import Proposal, ProposalDraft, ProposalKind, RoundSpec

S = TypeVar("S", bound=StrEnum)

R = RoundState
P = ProposalState

# DESIGN §3, written out as the design states it.
HAPPY_PATH = (
    R.created, R.proposing, R.in_review, R.amending, R.generating_data,
    R.training, R.evaluating, R.completed,
)  # fmt: skip
ROUND_ENDS = {R.completed, R.completed_unchanged, R.gate_failed, R.failed, R.cancelled}
NON_TERMINAL_ROUND_STATES = [s for s in R if s not in ROUND_ENDS]
DESIGNED_ROUND_MOVES = (
    list(pairwise(HAPPY_PATH))
    + [(R.proposing, R.completed_unchanged), (R.in_review, R.completed_unchanged)]
    + [(R.evaluating, R.gate_failed)]
    + [(s, end) for s in NON_TERMINAL_ROUND_STATES for end in (R.failed, R.cancelled)]
)
PROPOSAL_OUTCOMES = {P.accepted, P.modified, P.rejected, P.withdrawn}
DESIGNED_PROPOSAL_MOVES = [(P.drafted, P.posted), (P.drafted, P.withdrawn)] + [
    (P.posted, outcome) for outcome in sorted(PROPOSAL_OUTCOMES)
]


def _all_pairs(states: type[S]) -> list[tuple[S, S]]:
    return [(a, b) for a in states for b in states]


ILLEGAL_ROUND_MOVES = [m for m in _all_pairs(RoundState) if m not in DESIGNED_ROUND_MOVES]
ILLEGAL_PROPOSAL_MOVES = [m for m in _all_pairs(ProposalState) if m not in DESIGNED_PROPOSAL_MOVES]


def _ids(move: tuple[StrEnum, StrEnum]) -> str:
    return f"{move[0]}->{move[1]}"


def _reachable(table: Mapping[S, frozenset[S]], start: S) -> set[S]:
    seen = {start}
    queue = deque([start])
    while queue:
        for nxt in table[queue.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return seen


# -- rounds -------------------------------------------------------------------------


def test_the_round_table_covers_every_round_state() -> None:
    assert set(ROUND_TRANSITIONS) == set(RoundState)


@pytest.mark.parametrize("move", DESIGNED_ROUND_MOVES, ids=_ids)
def test_every_round_move_of_the_design_is_allowed(move: tuple[RoundState, RoundState]) -> None:
    current, target = move
    assert advance_round(current, target) is target


def test_a_round_can_walk_the_whole_happy_path() -> None:
    state = HAPPY_PATH[0]
    for target in HAPPY_PATH[1:]:
        state = advance_round(state, target)
    assert state is R.completed


@pytest.mark.parametrize("move", ILLEGAL_ROUND_MOVES, ids=_ids)
def test_every_round_move_outside_the_design_is_refused(
    move: tuple[RoundState, RoundState],
) -> None:
    current, target = move
    with pytest.raises(IllegalTransition):
        advance_round(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (R.in_review, R.proposing),
        (R.in_review, R.created),
        (R.completed, R.proposing),
        (R.training, R.amending),
        (R.created, R.in_review),
        (R.proposing, R.amending),
    ],
    ids=lambda s: str(s),
)
def test_a_refused_round_move_names_both_states_and_what_is_allowed(
    current: RoundState, target: RoundState
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        advance_round(current, target)
    error = caught.value
    message = str(error)
    assert (error.entity, error.current, error.target) == ("round", current, target)
    assert f"from {current} to {target}" in message
    allowed = ROUND_TRANSITIONS[current]
    if allowed:
        for option in allowed:
            assert option.value in message.split("may go to", 1)[1]
    else:
        assert "final" in message


def test_a_round_may_leave_review_only_forward_or_by_ending() -> None:
    earlier = set(HAPPY_PATH[: HAPPY_PATH.index(R.in_review)])
    assert earlier.isdisjoint(ROUND_TRANSITIONS[R.in_review])
    for back in earlier:
        with pytest.raises(IllegalTransition, match="cancelled"):
            advance_round(R.in_review, back)
    assert R.cancelled in ROUND_TRANSITIONS[R.in_review]


@pytest.mark.parametrize("state", HAPPY_PATH, ids=str)
def test_no_round_state_moves_back_along_the_happy_path(state: RoundState) -> None:
    for earlier in HAPPY_PATH[: HAPPY_PATH.index(state) + 1]:
        assert earlier not in ROUND_TRANSITIONS[state]


def test_the_terminal_round_states_are_exactly_the_ends_of_the_design() -> None:
    assert TERMINAL_ROUND_STATES == ROUND_ENDS


@pytest.mark.parametrize("state", sorted(ROUND_ENDS), ids=str)
def test_a_terminal_round_state_has_no_exit(state: RoundState) -> None:
    assert ROUND_TRANSITIONS[state] == frozenset()
    for target in RoundState:
        with pytest.raises(IllegalTransition, match=r"final"):
            advance_round(state, target)


@pytest.mark.parametrize("state", NON_TERMINAL_ROUND_STATES, ids=str)
@pytest.mark.parametrize("end", [R.failed, R.cancelled], ids=str)
def test_every_active_round_can_fail_or_be_cancelled(state: RoundState, end: RoundState) -> None:
    assert advance_round(state, end) is end


@pytest.mark.parametrize("state", list(RoundState), ids=str)
def test_every_round_state_is_reachable_from_created(state: RoundState) -> None:
    assert state in _reachable(ROUND_TRANSITIONS, R.created)


@pytest.mark.parametrize("state", NON_TERMINAL_ROUND_STATES, ids=str)
def test_every_active_round_can_still_reach_an_end(state: RoundState) -> None:
    assert _reachable(ROUND_TRANSITIONS, state) & ROUND_ENDS


# -- proposals ----------------------------------------------------------------------


def test_the_proposal_table_covers_every_proposal_state() -> None:
    assert set(PROPOSAL_TRANSITIONS) == set(ProposalState)


@pytest.mark.parametrize("move", DESIGNED_PROPOSAL_MOVES, ids=_ids)
def test_every_proposal_move_of_the_design_is_allowed(
    move: tuple[ProposalState, ProposalState],
) -> None:
    current, target = move
    assert advance_proposal(current, target) is target


@pytest.mark.parametrize("move", ILLEGAL_PROPOSAL_MOVES, ids=_ids)
def test_every_proposal_move_outside_the_design_is_refused(
    move: tuple[ProposalState, ProposalState],
) -> None:
    current, target = move
    with pytest.raises(IllegalTransition):
        advance_proposal(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (P.posted, P.drafted),
        (P.accepted, P.rejected),
        (P.drafted, P.accepted),
        (P.rejected, P.accepted),
        (P.withdrawn, P.posted),
    ],
    ids=lambda s: str(s),
)
def test_a_refused_proposal_move_names_both_states_and_what_is_allowed(
    current: ProposalState, target: ProposalState
) -> None:
    with pytest.raises(IllegalTransition) as caught:
        advance_proposal(current, target)
    error = caught.value
    message = str(error)
    assert (error.entity, error.current, error.target) == ("proposal", current, target)
    assert message.startswith("proposal ")
    assert f"from {current} to {target}" in message
    allowed = PROPOSAL_TRANSITIONS[current]
    if allowed:
        for option in allowed:
            assert option.value in message.split("may go to", 1)[1]
    else:
        assert "final" in message


def test_a_proposal_is_decided_only_after_it_is_posted() -> None:
    for outcome in PROPOSAL_OUTCOMES - {P.withdrawn}:
        with pytest.raises(IllegalTransition):
            advance_proposal(P.drafted, outcome)
        assert advance_proposal(advance_proposal(P.drafted, P.posted), outcome) is outcome


def test_the_settled_proposal_states_are_exactly_the_outcomes_of_the_design() -> None:
    assert SETTLED_PROPOSAL_STATES == PROPOSAL_OUTCOMES


@pytest.mark.parametrize("state", sorted(PROPOSAL_OUTCOMES), ids=str)
def test_a_settled_proposal_has_no_exit(state: ProposalState) -> None:
    assert PROPOSAL_TRANSITIONS[state] == frozenset()
    for target in ProposalState:
        with pytest.raises(IllegalTransition, match="final"):
            advance_proposal(state, target)


@pytest.mark.parametrize("state", [P.drafted, P.posted], ids=str)
def test_an_unsettled_proposal_can_be_withdrawn(state: ProposalState) -> None:
    assert advance_proposal(state, P.withdrawn) is P.withdrawn


@pytest.mark.parametrize("state", list(ProposalState), ids=str)
def test_every_proposal_state_is_reachable_from_drafted(state: ProposalState) -> None:
    assert state in _reachable(PROPOSAL_TRANSITIONS, P.drafted)


def test_an_illegal_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="round cannot go"):
        advance_round(R.created, R.completed)


# -- resuming a failed round --------------------------------------------------------


@pytest.mark.parametrize("stage", RETRAINING_STAGES, ids=str)
def test_an_operators_resume_takes_a_failed_round_back_to_a_retraining_stage(
    stage: RoundState,
) -> None:
    assert resume_round(R.failed, stage) is stage
    # The round's own lifecycle never leaves `failed`: only the resume order does.
    with pytest.raises(IllegalTransition, match="final"):
        advance_round(R.failed, stage)


@pytest.mark.parametrize(
    "move",
    [m for m in _all_pairs(RoundState) if not (m[0] is R.failed and m[1] in RETRAINING_STAGES)],
    ids=_ids,
)
def test_no_other_round_is_resumed_and_review_is_never_resumed(
    move: tuple[RoundState, RoundState],
) -> None:
    with pytest.raises(IllegalTransition):
        resume_round(*move)


def _adopted(state: ProposalState) -> ProposalStatus:
    return ProposalStatus(
        proposal=Proposal(
            id="r1-p1",
            round_id="r1",
            draft=ProposalDraft(
                kind=ProposalKind.add, title="Kindness", text="Be kind.", rationale="ev-1"
            ),
            prompt_version="propose.v2",
            model="m",
        ),
        state=state,
    )


DATASET = Dataset(uri="file:///d.jsonl", sha256="0" * 64, examples=3, method="supervised")


@pytest.mark.parametrize(
    ("kept", "stage"),
    [
        ({}, R.amending),
        ({"result_version": 2}, R.generating_data),
        ({"result_version": 2, "dataset": DATASET}, R.training),
        (
            {"result_version": 2, "dataset": DATASET, "fine_tune_job": "ftjob-1"},
            R.training,
        ),
        ({"result_version": 2, "dataset": DATASET, "candidate_model": "ft:m"}, R.evaluating),
    ],
    ids=["no-version", "version", "dataset", "failed-job", "candidate"],
)
def test_a_failed_round_resumes_after_the_last_stage_it_completed(
    kept: dict[str, object], stage: RoundState
) -> None:
    status = RoundStatus(
        spec=RoundSpec(round_id="r1", reviewers=["U1"]),
        state=R.failed,
        proposals=[_adopted(P.accepted), _adopted(P.rejected)],
        **kept,
    )
    assert status.resume_stage is stage


@pytest.mark.parametrize(
    "proposals",
    [[], [P.rejected], [P.accepted, P.posted], [P.withdrawn]],
    ids=["none-drafted", "all-rejected", "one-pending", "withdrawn"],
)
def test_a_round_whose_review_adopted_nothing_has_nothing_to_resume(
    proposals: list[ProposalState],
) -> None:
    status = RoundStatus(
        spec=RoundSpec(round_id="r1", reviewers=["U1"]),
        state=R.failed,
        proposals=[_adopted(p) for p in proposals],
    )
    assert status.resume_stage is None
