"""The review rules (who may decide, when decisions settle a proposal) and the
one Slack renderer: what a reviewer sees, within Slack's block limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from constitution import (
    Decision,
    DecisionKind,
    Proposal,
    ProposalDraft,
    ProposalKind,
    ProposalState,
    RoundSpec,
)
from constitution.contracts import ProposalStatus, SlackMessageRef, Voters, Withdrawal
from constitution.findings import CheckVerdict, Verdict
from constitution.models import ReviewPolicy
from constitution.review import eligible_reviewers, policy_for, settle
from constitution.samples import sample_constitution
from review.messages import (
    modify_view,
    parse_view_metadata,
    proposal_blocks,
    reject_view,
    summary_text,
)

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def vote(reviewer: str, kind: str, text: str | None = None) -> Decision:
    return Decision(
        proposal_id="r-p1", kind=DecisionKind(kind), reviewer=reviewer, text=text, decided_at=NOW
    )


def revision(rationale: str = "Evidence e1 shows the gap.", strict: bool = False) -> Proposal:
    current = sample_constitution().principles[0]
    return Proposal(
        id="r-p1",
        round_id="r",
        draft=ProposalDraft(
            kind=ProposalKind.revise,
            target=current.id,
            text=current.text + " Say which principle decided a refusal.",
            rationale=rationale,
            evidence=["e1", "e2"],
            touches=["P2"],
        ),
        prompt_version="propose.v1",
        model="stand-in",
        strict_review=strict,
    )


ALONE = Voters(reviewers=["UA"], policy=ReviewPolicy())


def blocks(status: ProposalStatus, voters: Voters = ALONE) -> list[dict[str, Any]]:
    rendered = proposal_blocks("round-r", status, sample_constitution(), voters, "http://gw")
    return [b.to_dict() for b in rendered]


# -- who decides, and when a proposal is settled ----------------------------------


@pytest.mark.parametrize(
    ("policy", "votes", "eligible", "settled"),
    [
        (ReviewPolicy(), [("A", "accept")], 3, ProposalState.accepted),
        (ReviewPolicy(), [("A", "reject")], 3, ProposalState.rejected),
        (ReviewPolicy(quorum=2), [("A", "accept")], 3, None),
        (ReviewPolicy(quorum=2), [("A", "accept"), ("B", "modify")], 3, ProposalState.modified),
        (ReviewPolicy(quorum=2), [("A", "accept"), ("B", "reject")], 3, ProposalState.rejected),
        (ReviewPolicy(quorum=2, veto=False), [("A", "accept"), ("B", "reject")], 3, None),
        (
            ReviewPolicy(quorum=2, veto=False),
            [("A", "reject"), ("B", "reject")],
            3,
            ProposalState.rejected,
        ),
        # Everyone has voted and no quorum was reached.
        (
            ReviewPolicy(quorum=2, veto=False),
            [("A", "accept"), ("B", "reject"), ("C", "reject")],
            3,
            ProposalState.rejected,
        ),
        # A quorum larger than the reviewers means all of them.
        (ReviewPolicy(quorum=5), [("A", "accept"), ("B", "accept")], 2, ProposalState.accepted),
    ],
)
def test_decisions_settle_a_proposal_by_the_policy(
    policy: ReviewPolicy, votes: list[tuple[str, str]], eligible: int, settled: Any
) -> None:
    assert settle(policy, [vote(who, kind) for who, kind in votes], eligible) == settled


def test_a_proposal_on_a_protected_principle_takes_the_stricter_policy() -> None:
    spec = RoundSpec(round_id="r", reviewers=["A"], strict_policy={"quorum": 3})
    assert policy_for(spec, revision(strict=True)).quorum == 3
    assert policy_for(spec, revision(strict=False)).quorum == 1


def test_the_adopted_text_is_the_last_change_a_reviewer_made() -> None:
    status = ProposalStatus(
        proposal=revision(),
        decisions=[vote("A", "modify", "First wording."), vote("B", "accept")],
    )
    assert status.final_decision is not None and status.final_decision.text == "First wording."


def test_reviewers_are_named_users_and_members_of_named_groups() -> None:
    spec = RoundSpec(round_id="r", reviewers=["U1"], reviewer_groups=["S1", "S2"])
    members = {"S1": ["U2", "U3"], "S9": ["U9"]}
    assert eligible_reviewers(spec, members) == {"U1", "U2", "U3"}


def test_a_round_may_name_only_groups_but_not_nobody() -> None:
    groups_only = RoundSpec(round_id="r", reviewer_groups=["S1"])
    assert eligible_reviewers(groups_only, {"S1": ["U2"]}) == {"U2"}
    with pytest.raises(ValidationError, match="a round needs reviewers") as raised:
        RoundSpec(round_id="r")
    assert raised.value.errors()[0]["loc"] == ("reviewers",)


@pytest.mark.parametrize(
    "bad",
    [
        {"reviewers": ["A"], "policy": {"quorum": 3}, "strict_policy": {"quorum": 2}},
        {"reviewers": ["A"], "strict_policy": {"quorum": 2, "veto": False}},
        {"reviewers": ["A"], "slack_retry_interval": "PT0.5S"},
        {"reviewers": ["A"], "policy": {"quorum": 0}},
    ],
)
def test_a_review_policy_that_cannot_work_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RoundSpec.model_validate({"round_id": "r", **bad})


# -- the message -----------------------------------------------------------------


def test_the_message_shows_the_change_as_a_diff_with_its_evidence_and_buttons() -> None:
    rendered = blocks(ProposalStatus(proposal=revision(), state=ProposalState.posted))
    text = str(rendered)
    assert rendered[0]["type"] == "header" and "revise P1" in rendered[0]["text"]["text"]
    assert "+ Say which principle decided a refusal." in text
    assert "`e1`, `e2`" in text and "Touches / conflicts: P2" in text and "Round `r`" in text
    [actions] = [b for b in rendered if b["type"] == "actions"]
    assert [e["action_id"] for e in actions["elements"]] == ["accept", "reject", "modify"]
    assert {e["value"] for e in actions["elements"]} == {"round-r|r-p1"}


def test_the_message_quotes_the_evidence_it_rests_on_cut_short() -> None:
    status = ProposalStatus(proposal=revision(), state=ProposalState.posted)
    evidence = {"e1": "A red-team prompt got a refusal\nthat named no principle. " * 20}
    rendered = proposal_blocks(
        "round-r", status, sample_constitution(), ALONE, "http://gw", evidence
    )
    [excerpts] = [
        b["text"]["text"] for b in (r.to_dict() for r in rendered) if "*Evidence:*" in str(b)
    ]
    assert "> `e1` A red-team prompt got a refusal that named no principle." in excerpts
    assert len(excerpts.splitlines()[1]) < 300 and excerpts.endswith("…")
    assert "`e2`" not in excerpts  # cited, but not in the ledger: no excerpt invented


def test_long_content_is_cut_within_slacks_limits_with_a_link_to_the_full_proposal() -> None:
    long = "Evidence says so. " * 220  # 3960 characters, within the model's limit
    rendered = blocks(ProposalStatus(proposal=revision(rationale=long), state=ProposalState.posted))
    sections = [b["text"]["text"] for b in rendered if b["type"] == "section"]
    assert all(len(t) <= 3000 for t in sections)
    [why] = [t for t in sections if t.startswith("*Why:*")]
    assert why.endswith("<http://gw/rounds/r#r-p1|full proposal>")
    assert len(rendered) <= 50


def test_votes_show_while_open_and_the_outcome_replaces_the_buttons_once_settled() -> None:
    proposal = revision(strict=True)
    two = Voters(reviewers=["UA", "UB", "UC"], policy=ReviewPolicy(quorum=2))
    open_ = ProposalStatus(
        proposal=proposal,
        state=ProposalState.posted,
        decisions=[vote("UA", "accept")],
        accepts_needed=2,
    )
    text = str(blocks(open_, two))
    assert "protected principle" in text
    assert ":white_check_mark: accept by <@UA>" in text
    settled = open_.model_copy(
        update={
            "state": ProposalState.modified,
            "decisions": [vote("UA", "accept"), vote("UB", "modify", "Kinder words.")],
        }
    )
    rendered = blocks(settled, two)
    assert not [b for b in rendered if b["type"] == "actions"]
    last = rendered[-1]["text"]["text"]
    assert last.startswith(":pencil2: Accepted with changes by <@UB> at 2026-11-30 09:00 UTC")
    assert ">Kinder words." in last and "<@UA>" in last


def test_the_message_says_who_may_vote_and_who_is_still_required() -> None:
    voters = Voters(
        reviewers=["UA", "UB", "UC"], groups=["S0SAFETY"], policy=ReviewPolicy(quorum=2)
    )
    status = ProposalStatus(
        proposal=revision(), state=ProposalState.posted, decisions=[vote("UA", "accept")]
    )
    [votes] = [b["text"]["text"] for b in blocks(status, voters) if "*Votes:*" in str(b)]
    assert "*Who decides:* <@UA>, <@UB>, <@UC>, members of <!subteam^S0SAFETY>" in votes
    assert "2 accepts adopt it, one reject rejects it" in votes
    assert "1 of 2 accepts; waiting for <@UB> or <@UC>" in votes
    # Before anyone voted, two more accepts are needed from any of them.
    fresh = status.model_copy(update={"decisions": []})
    [votes] = [b["text"]["text"] for b in blocks(fresh, voters) if "*Votes:*" in str(b)]
    assert "none yet · 0 of 2 accepts; waiting for 2 more of <@UA>, <@UB>, <@UC>" in votes


def test_an_operator_override_names_the_operator_in_words_never_as_a_mention() -> None:
    override = Decision(
        proposal_id="r-p1",
        kind=DecisionKind.accept,
        reviewer="operator:alice",
        comment="urgent fix",
        decided_at=NOW,
        override=True,
    )
    settled = ProposalStatus(
        proposal=revision(), state=ProposalState.accepted, decisions=[override]
    )
    text = str(blocks(settled))
    assert "by operator alice (override) at 2026-11-30 09:00 UTC" in text
    assert "<@operator" not in text
    summary = summary_text("r", "amending", [settled], None)
    assert "accepted by operator alice (override)" in summary and "<@operator" not in summary


def test_accept_on_a_protected_principle_asks_for_confirmation() -> None:
    protected = revision()  # P1 is protected in the sample constitution
    assert sample_constitution().principles[0].protected
    [actions] = [
        b
        for b in blocks(ProposalStatus(proposal=protected, state=ProposalState.posted))
        if b["type"] == "actions"
    ]
    accept = actions["elements"][0]
    assert accept["action_id"] == "accept"
    assert accept["confirm"]["confirm"]["text"] == "Accept"
    assert "protected principle" in accept["confirm"]["text"]["text"]
    plain = protected.model_copy(
        update={"draft": protected.draft.model_copy(update={"target": "P3"})}
    )
    [actions] = [
        b
        for b in blocks(ProposalStatus(proposal=plain, state=ProposalState.posted))
        if b["type"] == "actions"
    ]
    assert "confirm" not in actions["elements"][0]


def test_the_protected_principle_warning_appears_once() -> None:
    flagged = revision(strict=True).model_copy(
        update={
            "checks": [
                CheckVerdict(
                    check="protected",
                    verdict=Verdict.flagged,
                    detail="changes protected principle P1: the stricter review policy applies",
                )
            ]
        }
    )
    text = str(blocks(ProposalStatus(proposal=flagged, state=ProposalState.posted)))
    assert text.count("protected principle P1") == 1
    # The confirmation dialog says so too, but that is not part of the message text.
    assert ":lock: Changes protected principle P1" in text


def test_a_withdrawn_message_says_why_and_by_whom() -> None:
    withdrawn = ProposalStatus(
        proposal=revision(),
        state=ProposalState.withdrawn,
        decisions=[vote("UA", "accept")],
        withdrawal=Withdrawal(
            actor="operator:ops-oliver", reason="round cancelled: wrong evidence", at=NOW
        ),
    )
    rendered = blocks(withdrawn)
    assert not [b for b in rendered if b["type"] == "actions"]
    last = rendered[-1]["text"]["text"]
    assert last.startswith(
        ":heavy_minus_sign: Withdrawn by operator ops-oliver at 2026-11-30 09:00 UTC: "
        "round cancelled: wrong evidence"
    )
    assert "accept by <@UA>" in last


def test_the_round_summary_lists_each_outcome_and_links_the_round_page() -> None:
    accepted = ProposalStatus(
        proposal=revision(), state=ProposalState.accepted, decisions=[vote("UA", "accept")]
    )
    withdrawn = ProposalStatus(
        proposal=revision().model_copy(update={"id": "r-p2"}),
        state=ProposalState.withdrawn,
        withdrawal=Withdrawal(actor="workflow", reason="the review deadline passed", at=NOW),
    )
    text = summary_text("r", "amending", [accepted, withdrawn], 2, "http://gw/rounds/r")
    lines = text.splitlines()
    assert (
        lines[0]
        == "Round `r` review ended (amending): 1 accepted, 1 withdrawn; new constitution v2."
    )
    assert lines[1] == "• `r-p1` revise P1: accepted by <@UA>"
    assert lines[2] == "• `r-p2` revise P1: withdrawn by the round (the review deadline passed)"
    assert lines[3].startswith("<http://gw/rounds/r|")


def test_the_modify_modal_shows_the_current_text_and_edits_the_proposed_one() -> None:
    status = ProposalStatus(proposal=revision(), state=ProposalState.posted)
    current = sample_constitution().principles[0]
    view = modify_view("round-r", status, "C1", "1.2", current).to_dict()
    shown = " ".join(b["text"]["text"] for b in view["blocks"] if b["type"] == "section")
    assert f">{current.text}" in shown and f"Current text of {current.id}" in shown
    [text] = [b for b in view["blocks"] if b.get("block_id") == "text"]
    assert text["element"]["initial_value"] == status.proposal.draft.text
    assert "Proposed text" in text["label"]["text"]


def test_the_reject_modal_asks_for_an_optional_reason_and_names_its_message() -> None:
    status = ProposalStatus(
        proposal=revision(),
        state=ProposalState.posted,
        message=SlackMessageRef(channel="C1", ts="1.2"),
    )
    view = reject_view("round-r", status, "C1", "1.2").to_dict()
    [reason] = [b for b in view["blocks"] if b["type"] == "input"]
    assert reason["optional"] is True and reason["block_id"] == "comment"
    assert parse_view_metadata(view["private_metadata"]) == ("round-r", "r-p1", "C1", "1.2")
    with pytest.raises(ValueError, match="not an amend modal"):
        parse_view_metadata("someone-else|x")


def test_a_policy_reads_as_a_sentence_whatever_its_quorum() -> None:
    from constitution.models import ReviewPolicy

    assert ReviewPolicy(quorum=1).describe() == "1 accept adopts, one reject rejects"
    assert ReviewPolicy(quorum=2).describe("it") == "2 accepts adopt it, one reject rejects it"
    assert ReviewPolicy(quorum=1, veto=False).describe("it") == (
        "1 accept adopts it, 1 reject rejects it"
    )
    assert ReviewPolicy(quorum=3, veto=False).describe() == "3 accepts adopt, 3 rejects reject"
