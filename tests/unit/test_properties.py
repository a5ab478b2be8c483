"""Properties that hold for any input (hypothesis): the signature check
answers every request with a reason or None, never an exception; evidence
and round specs are either parsed or refused with a validation error; the
interaction parser either reads a payload, ignores it or names what is
wrong; and no sequence of events takes a round or a proposal through a move
its lifecycle forbids, nor changes a proposal once its decisions settle it."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from constitution import (
    Decision,
    DecisionKind,
    ProposalState,
    RoundSpec,
    RoundState,
)
from constitution.evidence import EvidenceFileError, parse_evidence
from constitution.lifecycle import (
    PROPOSAL_TRANSITIONS,
    ROUND_TRANSITIONS,
    TERMINAL_ROUND_STATES,
    IllegalTransition,
    advance_proposal,
    advance_round,
)
from constitution.models import ReviewPolicy
from constitution.review import settle
from gateway.signing import slack_verifier, trainer_verifier
from gateway.slack import BlockActions, MalformedInteraction, ViewSubmission, parse_interaction

SETTINGS = settings(max_examples=150, deadline=None, database=None)
NOW = 1_800_000_000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
header_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=40)


@SETTINGS
@given(
    headers=st.dictionaries(
        st.sampled_from(
            ["X-Slack-Request-Timestamp", "X-Slack-Signature", "x-amend-timestamp", "other"]
        ),
        header_text | st.integers(0, 10**13).map(str),
    ),
    body=st.binary(max_size=200),
)
def test_any_headers_and_body_get_a_reason_or_pass_never_an_exception(
    headers: dict[str, str], body: bytes
) -> None:
    for verifier in (slack_verifier("s", lambda: NOW), trainer_verifier("s", lambda: NOW)):
        refusal = verifier.refusal(headers, body)
        assert refusal is None or isinstance(refusal, str)


# Payloads shaped like Slack's, with any value in any field amend reads.
slack_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["block_actions", "view_submission", "view_closed", "shortcut"])},
    optional={
        "user": json_values | st.fixed_dictionaries({"id": json_values}),
        "container": json_values,
        "channel": json_values,
        "trigger_id": json_values,
        "actions": json_values
        | st.lists(st.fixed_dictionaries({"action_id": json_values, "value": json_values})),
        "view": json_values
        | st.fixed_dictionaries(
            {"callback_id": json_values, "private_metadata": json_values},
            optional={"state": st.fixed_dictionaries({"values": json_values})},
        ),
    },
)


@SETTINGS
@given(payload=json_values | slack_like)
def test_any_payload_is_read_ignored_or_refused_with_a_reason(payload: Any) -> None:
    try:
        parsed = parse_interaction(payload)
    except MalformedInteraction as error:
        assert str(error)
        return
    assert parsed is None or isinstance(parsed, BlockActions | ViewSubmission)


@SETTINGS
@given(lines=st.lists(json_values.map(json.dumps) | st.text(max_size=60), max_size=6))
def test_any_evidence_file_is_parsed_whole_or_refused_with_a_clear_error(
    lines: list[str],
) -> None:
    try:
        items = parse_evidence("\n".join(lines), "fuzzed.jsonl")
    except EvidenceFileError as error:
        assert "fuzzed.jsonl" in str(error)
        return
    assert len(items) <= len(lines)


@SETTINGS
@given(
    spec=json_values
    | st.fixed_dictionaries(
        {"round_id": json_values | st.from_regex(r"[a-z0-9][a-z0-9-]{0,70}", fullmatch=True)},
        optional={
            "reviewers": json_values,
            "reviewer_groups": json_values,
            "max_proposals": json_values,
            "policy": json_values,
            "reminder_interval": json_values,
        },
    )
)
def test_any_round_spec_is_parsed_or_refused_with_a_validation_error(spec: Any) -> None:
    try:
        parsed = RoundSpec.model_validate(spec)
    except ValidationError:
        return
    assert RoundSpec.model_validate_json(parsed.model_dump_json()) == parsed


@SETTINGS
@given(targets=st.lists(st.sampled_from(list(RoundState)), max_size=30))
def test_no_sequence_of_events_moves_a_round_where_its_lifecycle_forbids(
    targets: list[RoundState],
) -> None:
    state = RoundState.created
    path = [state]
    for target in targets:
        try:
            state = advance_round(state, target)
        except IllegalTransition:
            continue
        path.append(state)
    for before, after in itertools.pairwise(path):
        assert after in ROUND_TRANSITIONS[before]
    # An ended round never moves again, and review is left only forward or by an end.
    ended = [i for i, s in enumerate(path) if s in TERMINAL_ROUND_STATES]
    assert not ended or ended[0] == len(path) - 1


@SETTINGS
@given(targets=st.lists(st.sampled_from(list(ProposalState)), max_size=20))
def test_no_sequence_of_events_moves_a_proposal_where_its_lifecycle_forbids(
    targets: list[ProposalState],
) -> None:
    state = ProposalState.drafted
    settled_at: ProposalState | None = None
    for target in targets:
        try:
            moved = advance_proposal(state, target)
        except IllegalTransition:
            continue
        assert moved in PROPOSAL_TRANSITIONS[state]
        assert settled_at is None, f"a settled proposal ({settled_at}) moved to {moved}"
        state = moved
        if not PROPOSAL_TRANSITIONS[state]:
            settled_at = state


@SETTINGS
@given(
    votes=st.lists(
        st.tuples(st.sampled_from(["U1", "U2", "U3", "U4"]), st.sampled_from(list(DecisionKind))),
        max_size=8,
        unique_by=lambda vote: vote[0],
    ),
    quorum=st.integers(1, 5),
    veto=st.booleans(),
)
def test_decisions_in_any_order_settle_a_proposal_once_and_for_good(
    votes: list[tuple[str, DecisionKind]], quorum: int, veto: bool
) -> None:
    policy = ReviewPolicy(quorum=quorum, veto=veto)
    decisions: list[Decision] = []
    settled: ProposalState | None = None
    for reviewer, kind in votes:
        if settled is not None:
            break  # the round refuses decisions on a settled proposal
        decisions.append(
            Decision(
                proposal_id="r-p1",
                kind=kind,
                reviewer=reviewer,
                text="new text" if kind is DecisionKind.modify else None,
                decided_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        settled = settle(policy, decisions, eligible=4)
        if settled is not None:
            assert settled in PROPOSAL_TRANSITIONS[ProposalState.posted]
    if settled is None:
        assert len(decisions) < 4  # everyone voting always settles it
