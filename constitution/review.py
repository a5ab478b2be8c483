"""Who may decide a proposal, and when its decisions settle it.

Pure functions over the round's spec and the decisions so far, so the
workflow's validator and its update handler ask the same question the same
way, and the rules are tested without Temporal.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from constitution.lifecycle import ProposalState
from constitution.models import Decision, DecisionKind, Proposal, ReviewPolicy, RoundSpec


def eligible_reviewers(spec: RoundSpec, group_members: Mapping[str, Iterable[str]]) -> set[str]:
    """Who may decide the round's proposals: reviewers named on the spec, and its groups' members.

    Group members are as last resolved from Slack.
    """
    members = {user for group in spec.reviewer_groups for user in group_members.get(group, ())}
    return set(spec.reviewers) | members


def policy_for(spec: RoundSpec, proposal: Proposal) -> ReviewPolicy:
    """The review policy a proposal settles under.

    The round's `strict_policy` for a proposal the checks marked
    `strict_review` (it changes a protected principle, or rests only on
    evidence that reads like instructions), else its `policy`.
    """
    return spec.strict_policy if proposal.strict_review else spec.policy


def required_accepts(policy: ReviewPolicy, eligible: int) -> int:
    """A quorum larger than the people who may decide means all of them."""
    return max(1, min(policy.quorum, eligible))


def settle(
    policy: ReviewPolicy, decisions: Sequence[Decision], eligible: int
) -> ProposalState | None:
    """The state the decisions so far put the proposal in; None while it waits for more.

    Accepts and modifies count alike; the proposal is `modified` when any
    accepting reviewer changed its text (the last change is adopted).
    """
    needed = required_accepts(policy, eligible)
    accepts = [d for d in decisions if d.kind is not DecisionKind.reject]
    rejects = len(decisions) - len(accepts)
    if rejects and (policy.veto or rejects >= needed):
        return ProposalState.rejected
    if len(accepts) >= needed:
        if any(d.kind is DecisionKind.modify for d in accepts):
            return ProposalState.modified
        return ProposalState.accepted
    if decisions and len(decisions) >= eligible:
        return ProposalState.rejected  # everyone has voted and no quorum was reached
    return None


def adopted_decision(decisions: Sequence[Decision]) -> Decision | None:
    """The decision whose text a settled proposal adopts.

    The last modify if any reviewer changed the text, else the last decision.
    """
    modified = [d for d in decisions if d.kind is DecisionKind.modify]
    if modified:
        return modified[-1]
    return decisions[-1] if decisions else None


def tally(policy: ReviewPolicy, decisions: Sequence[Decision], eligible: int) -> str:
    """Where the vote stands, for people: "1 of 2 accepts"."""
    needed = required_accepts(policy, eligible)
    accepts = sum(1 for d in decisions if d.kind is not DecisionKind.reject)
    text = f"{accepts} of {needed} accept{'s' if needed != 1 else ''}"
    if not policy.veto:
        rejects = len(decisions) - accepts
        text += f", {rejects} of {needed} reject{'s' if needed != 1 else ''}"
    return text


OPERATOR_PREFIX = "operator:"


def operator_name(reviewer: str) -> str | None:
    """The operator's name when `reviewer` is an operator ('operator:<name>'), else None.

    Operators decide by override from the CLI or the API; they have no Slack
    user id, so they are named in words rather than mentioned.
    """
    return reviewer.removeprefix(OPERATOR_PREFIX) if reviewer.startswith(OPERATOR_PREFIX) else None


class Awaiting(BaseModel):
    """Where the vote on an open proposal stands, and who could still move it.

    `waiting_for` are the eligible reviewers who have not voted, sorted;
    `accepts_short` how many more accepts would adopt the proposal.
    """

    model_config = ConfigDict(frozen=True)

    tally: str
    accepts_short: int
    waiting_for: list[str]


def awaiting(
    policy: ReviewPolicy, decisions: Sequence[Decision], eligible: Collection[str]
) -> Awaiting:
    """Who is still required on an open proposal: the tally and the reviewers yet to vote."""
    needed = required_accepts(policy, len(eligible))
    accepts = sum(1 for d in decisions if d.kind is not DecisionKind.reject)
    voted = {d.reviewer for d in decisions}
    return Awaiting(
        tally=tally(policy, decisions, len(eligible)),
        accepts_short=max(0, needed - accepts),
        waiting_for=sorted(set(eligible) - voted),
    )


def not_a_reviewer(spec: RoundSpec, reviewer: str) -> str:
    """Why `reviewer` may not decide the round's proposals, naming who may.

    The same words whether the round's validator refuses a decision or the
    gateway refuses the click that would open a decision modal.
    """
    deciders = [f"<@{r}>" for r in spec.reviewers] + [
        f"<!subteam^{g}>" for g in spec.reviewer_groups
    ]
    return (
        f"{reviewer} is not a reviewer of round {spec.round_id}; "
        f"it is decided by {', '.join(deciders)}"
    )
