"""The round and proposal lifecycles, as data.

One table per entity says which moves are allowed; `advance` is the only way a
state changes, so an illegal move is refused in one place with one error.
"""

from __future__ import annotations

from enum import StrEnum


class RoundState(StrEnum):
    """Where a round stands; only `advance_round` moves it, as `ROUND_TRANSITIONS` allows.

    The values are what the ledger and the `RoundState` search attribute record.
    """

    created = "created"
    proposing = "proposing"
    in_review = "in_review"
    amending = "amending"
    generating_data = "generating_data"
    training = "training"
    evaluating = "evaluating"
    completed = "completed"
    completed_unchanged = "completed_unchanged"
    gate_failed = "gate_failed"
    failed = "failed"
    cancelled = "cancelled"


class ProposalState(StrEnum):
    """Where a proposal stands; only `advance_proposal` moves it, as `PROPOSAL_TRANSITIONS` allows.

    `withdrawn` ends a proposal nobody settled: its round was cancelled, or its
    review deadline passed.
    """

    drafted = "drafted"
    posted = "posted"
    accepted = "accepted"
    modified = "modified"
    rejected = "rejected"
    withdrawn = "withdrawn"


_R = RoundState
_ACTIVE_ROUND = (
    _R.created,
    _R.proposing,
    _R.in_review,
    _R.amending,
    _R.generating_data,
    _R.training,
    _R.evaluating,
)

ROUND_TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    _R.created: frozenset({_R.proposing}),
    _R.proposing: frozenset({_R.in_review, _R.completed_unchanged}),
    _R.in_review: frozenset({_R.amending, _R.completed_unchanged}),
    _R.amending: frozenset({_R.generating_data}),
    _R.generating_data: frozenset({_R.training}),
    _R.training: frozenset({_R.evaluating}),
    _R.evaluating: frozenset({_R.completed, _R.gate_failed}),
    **{
        s: frozenset()
        for s in (_R.completed, _R.completed_unchanged, _R.gate_failed, _R.failed, _R.cancelled)
    },
}
# Any active round may fail or be cancelled; that is the only way back out of review.
for _state in _ACTIVE_ROUND:
    ROUND_TRANSITIONS[_state] = ROUND_TRANSITIONS[_state] | {_R.failed, _R.cancelled}

_P = ProposalState
PROPOSAL_TRANSITIONS: dict[ProposalState, frozenset[ProposalState]] = {
    _P.drafted: frozenset({_P.posted, _P.withdrawn}),
    _P.posted: frozenset({_P.accepted, _P.modified, _P.rejected, _P.withdrawn}),
    _P.accepted: frozenset(),
    _P.modified: frozenset(),
    _P.rejected: frozenset(),
    _P.withdrawn: frozenset(),
}

TERMINAL_ROUND_STATES = frozenset(s for s, nxt in ROUND_TRANSITIONS.items() if not nxt)
SETTLED_PROPOSAL_STATES = frozenset(s for s, nxt in PROPOSAL_TRANSITIONS.items() if not nxt)

# Retraining, in order: the stages a failed round may be resumed at.
RETRAINING_STAGES = (_R.amending, _R.generating_data, _R.training, _R.evaluating)
# A failed round's workflow has ended, so `failed` stays terminal for
# `advance_round`; an operator's `amend round resume` is the one way back, to the
# retraining stage the round had not finished (its review is never run again).
RESUME_TRANSITIONS: dict[RoundState, frozenset[RoundState]] = {
    _R.failed: frozenset(RETRAINING_STAGES),
}


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow."""

    def __init__(self, entity: str, current: str, target: str, allowed: frozenset[str]) -> None:
        options = ", ".join(sorted(allowed)) or "nothing (it is final)"
        super().__init__(
            f"{entity} cannot go from {current} to {target}; from {current} it may go to {options}"
        )
        self.entity = entity
        self.current = current
        self.target = target


def advance_round(current: RoundState, target: RoundState) -> RoundState:
    """The target, if `ROUND_TRANSITIONS` allows the move; else `IllegalTransition`."""
    allowed = ROUND_TRANSITIONS[current]
    if target not in allowed:
        raise IllegalTransition("round", current, target, frozenset(allowed))
    return target


def resume_round(current: RoundState, target: RoundState) -> RoundState:
    """The target, if `RESUME_TRANSITIONS` allows resuming there; else `IllegalTransition`.

    Kept apart from `advance_round`: only an operator's resume order moves a
    round out of `failed`, never the round's own lifecycle.
    """
    allowed = RESUME_TRANSITIONS.get(current, frozenset())
    if target not in allowed:
        raise IllegalTransition("round", current, target, allowed)
    return target


def advance_proposal(current: ProposalState, target: ProposalState) -> ProposalState:
    """The target, if `PROPOSAL_TRANSITIONS` allows the move; else `IllegalTransition`."""
    allowed = PROPOSAL_TRANSITIONS[current]
    if target not in allowed:
        raise IllegalTransition("proposal", current, target, frozenset(allowed))
    return target
