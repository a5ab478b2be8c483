"""The one Slack renderer: proposal messages, the modify modal, reminders and
round summaries, built with `slack_sdk.models.blocks`.

Buttons carry `<workflow id>|<proposal id>` as their value, so an interaction
names the round it belongs to without any lookup, even weeks later.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from constitution import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    Principle,
    Proposal,
    ProposalKind,
    ProposalState,
    is_proposal_of,
    round_id_of,
)
from constitution.amendment import sentence_diff
from constitution.contracts import ProposalStatus, Voters
from constitution.review import awaiting, operator_name

ACTIONS_BLOCK = "decide"
MODIFY_CALLBACK = "modify_proposal"
REJECT_CALLBACK = "reject_proposal"
DECISION_CALLBACKS = {MODIFY_CALLBACK: "modify", REJECT_CALLBACK: "reject"}
# Slack's text limits, as its Block Kit models state them.
SECTION_LIMIT = SectionBlock.text_max_length
HEADER_LIMIT = HeaderBlock.text_max_length
# slack_sdk's models state no limit for a context element; Slack refuses more
# than 3000, and a context line is meant to be short.
CONTEXT_LIMIT = 2000
EXCERPTS_SHOWN = 3
EXCERPT_LIMIT = 240

STATE_WORDS = {
    ProposalState.accepted: ":white_check_mark: Accepted",
    ProposalState.modified: ":pencil2: Accepted with changes",
    ProposalState.rejected: ":x: Rejected",
    ProposalState.withdrawn: ":heavy_minus_sign: Withdrawn",
}
VOTE_WORDS = {
    DecisionKind.accept: ":white_check_mark: accept",
    DecisionKind.modify: ":pencil2: modify",
    DecisionKind.reject: ":x: reject",
}


SLACK_USER = re.compile(r"^[UW][A-Z0-9]+$")


def who(actor: str) -> str:
    """A reviewer or actor as Slack shows them: a mention of a Slack user, else words.

    An operator ('operator:<name>') has no Slack user id, so a mention of one
    would render as a broken `<@operator:…>`; the round itself acts as
    'workflow' (a deadline withdrawing what is pending).
    """
    name = operator_name(actor)
    if name is not None:
        return f"operator {name}"
    if actor == "workflow":
        return "the round"
    return f"<@{actor}>" if SLACK_USER.match(actor) else actor


def _group(group_id: str) -> str:
    return f"<!subteam^{group_id}>"


def action_value(workflow_id: str, proposal_id: str) -> str:
    return f"{workflow_id}|{proposal_id}"


def parse_action_value(value: str) -> tuple[str, str]:
    workflow_id, sep, proposal_id = value.partition("|")
    round_id = round_id_of(workflow_id)
    if not sep or round_id is None or not is_proposal_of(round_id, proposal_id):
        raise ValueError(f"not an amend action value: {value[:200]!r}")
    return workflow_id, proposal_id


def round_url(dashboard_url: str | None, round_id: str) -> str | None:
    """The round's page on the gateway, where one is reachable."""
    return f"{dashboard_url}/rounds/{round_id}" if dashboard_url else None


def proposal_url(dashboard_url: str | None, proposal: Proposal) -> str | None:
    """The proposal's place on its round's page."""
    page = round_url(dashboard_url, proposal.round_id)
    return f"{page}#{proposal.id}" if page else None


def _clip(text: str, limit: int = SECTION_LIMIT, more: str | None = None) -> str:
    """Fit Slack's limit; what is cut points to the full proposal when there is a link."""
    if len(text) <= limit:
        return text
    tail = f"… <{more}|full proposal>" if more else "…"
    cut = text[: limit - len(tail)]
    if cut.count("```") % 2:  # do not leave a code block open
        cut = cut[: limit - len(tail) - 3] + "```"
    return cut + tail


def proposed_change(status: ProposalStatus, constitution: ConstitutionVersion) -> str:
    """The change as a readable diff: current and proposed text sentence by
    sentence, unchanged sentences kept for context."""
    draft = status.proposal.draft
    current = constitution.principle(draft.target) if draft.target else None
    if draft.kind is ProposalKind.add:
        return f"*New principle: {draft.title}*\n>{draft.text}"
    if current is None:
        return f"*{draft.kind.value} {draft.target}* (principle not found)"
    if draft.kind is ProposalKind.retire:
        return f"*Retire {current.id}. {current.title}*\n~{current.text}~"
    lines = sentence_diff(current.text, draft.text or "")
    return (
        f"*{draft.kind.value.capitalize()} {current.id}. {current.title}*\n```"
        + "\n".join(lines)
        + "```"
    )


def _facts(proposal: Proposal, link: str | None) -> str:
    draft = proposal.draft
    facts = [f"Round `{proposal.round_id}`"]
    if draft.evidence:
        facts.append("Evidence: " + ", ".join(f"`{e}`" for e in draft.evidence))
    if draft.touches:
        facts.append("Touches / conflicts: " + ", ".join(draft.touches))
    facts.append(f"Model `{proposal.model}`, prompt `{proposal.prompt_version}`")
    if link:
        facts.append(f"<{link}|Full proposal and round>")
    return " · ".join(facts)


def _vote(decision: Decision) -> str:
    override = " (override)" if decision.override else ""
    return f"{VOTE_WORDS[decision.kind]} by {who(decision.reviewer)}{override}"


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"


def votes_line(status: ProposalStatus, voters: Voters) -> str:
    """Who may vote, the votes so far, and who is still required.

    For example "1 of 2 accepts; waiting for <@a> or <@b>".
    """
    deciders = [who(r) for r in voters.reviewers]
    deciders += [f"members of {_group(g)}" for g in voters.groups]
    lines = [
        f"*Who decides:* {', '.join(deciders) or 'nobody yet'} ({voters.policy.describe('it')})"
    ]
    stand = awaiting(voters.policy, status.decisions, voters.reviewers)
    votes = ", ".join(_vote(d) for d in status.decisions) or "none yet"
    waiting = [who(r) for r in stand.waiting_for]
    if not waiting and voters.groups:
        waiting = [f"members of {_group(g)}" for g in voters.groups]
    if waiting and stand.accepts_short > 1:
        still = f"; waiting for {stand.accepts_short} more of {', '.join(waiting)}"
    elif waiting:
        still = f"; waiting for {_either(waiting)}"
    else:
        still = ""
    lines.append(f"*Votes:* {votes} · {stand.tally}{still}")
    return "\n".join(lines)


def changes_protected(status: ProposalStatus, constitution: ConstitutionVersion) -> bool:
    """Whether the proposal changes a principle the constitution protects."""
    target = status.proposal.draft.target
    principle = constitution.principle(target) if target else None
    return principle is not None and principle.protected


def _accept_button(value: str, protected: bool) -> ButtonElement:
    """Accept; on a protected principle Slack asks the reviewer to confirm first."""
    confirm = (
        ConfirmObject(
            title="Accept a protected change?",
            text="This changes a protected principle. Accepting counts towards adopting it "
            "under the round's stricter review policy.",
            confirm="Accept",
            deny="Back",
            style="danger",
        )
        if protected
        else None
    )
    return ButtonElement(
        text="Accept", action_id="accept", value=value, style="primary", confirm=confirm
    )


def proposal_blocks(
    workflow_id: str,
    status: ProposalStatus,
    constitution: ConstitutionVersion,
    voters: Voters,
    dashboard_url: str | None = None,
    evidence: Mapping[str, str] | None = None,
) -> list[Block]:
    """The proposal's message. Each part is one block, so a new part (check
    verdicts, an impact preview) is one more block built from the proposal.
    `evidence` maps the ids the proposal cites to their summaries."""
    proposal = status.proposal
    draft = proposal.draft
    link = proposal_url(dashboard_url, proposal)
    target = f" {draft.target}" if draft.target else ""
    blocks: list[Block] = [
        HeaderBlock(
            text=_clip(f"Proposal {proposal.id}: {draft.kind.value}{target}", HEADER_LIMIT)
        ),
        SectionBlock(
            text=MarkdownTextObject(text=_clip(proposed_change(status, constitution), more=link))
        ),
        SectionBlock(text=MarkdownTextObject(text=_clip(f"*Why:* {draft.rationale}", more=link))),
    ]
    excerpts = evidence_excerpts(proposal, evidence or {})
    if excerpts:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(excerpts, more=link))))
    protected = changes_protected(status, constitution)
    scrutiny = scrutiny_text(proposal, protected_shown=protected)
    if scrutiny:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(scrutiny, more=link))))
    if protected:
        # The one line that says so: the `protected` check's flag is left out above.
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text=f":lock: Changes protected principle {draft.target}: the round's "
                    "stricter review policy applies."
                )
            )
        )
    blocks.append(
        ContextBlock(
            elements=[MarkdownTextObject(text=_clip(_facts(proposal, link), CONTEXT_LIMIT))]
        )
    )
    if status.state is ProposalState.posted:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(votes_line(status, voters)))))
        value = action_value(workflow_id, proposal.id)
        blocks.append(
            ActionsBlock(
                block_id=ACTIONS_BLOCK,
                elements=[
                    _accept_button(value, protected),
                    ButtonElement(text="Reject…", action_id="reject", value=value, style="danger"),
                    ButtonElement(text="Modify…", action_id="modify", value=value),
                ],
            )
        )
    else:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(decided_line(status)))))
    return blocks


def evidence_excerpts(proposal: Proposal, evidence: Mapping[str, str]) -> str | None:
    """The first few items the proposal rests on, each cut short: enough to
    see what it is grounded in; the rest is behind the link."""
    cited = [e for e in proposal.draft.evidence if e in evidence]
    if not cited:
        return None
    lines = [f"> `{e}` {_one_line(evidence[e], EXCERPT_LIMIT)}" for e in cited[:EXCERPTS_SHOWN]]
    if len(cited) > EXCERPTS_SHOWN:
        lines.append(f"_and {len(cited) - EXCERPTS_SHOWN} more_")
    return "*Evidence:*\n" + "\n".join(lines)


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def scrutiny_text(proposal: Proposal, *, protected_shown: bool = False) -> str | None:
    """What the checks flagged, the principles it contradicts and its previewed
    effect: the few lines a reviewer should read before deciding. With
    `protected_shown`, the message has its own line for a protected principle,
    so the `protected` check's flag is not said twice."""
    lines = [
        f":warning: *{c.check}:* {c.detail}"
        for c in proposal.checks
        if c.verdict == "flag" and not (protected_shown and c.check == "protected")
    ]
    lines += [
        f":left_right_arrow: *Contradicts {c.principle}:* {c.reasoning}"
        for c in proposal.conflicts
        if c.relation == "contradicts"
    ]
    if proposal.impact is not None:
        lines.append(f":crystal_ball: *Impact preview:* {proposal.impact.summary}")
    return "\n".join(lines) or None


def decided_line(status: ProposalStatus) -> str:
    """Who decided what, and when; every vote when more than one was cast.

    A withdrawn proposal says by whom and why instead.
    """
    word = STATE_WORDS.get(status.state, status.state.value)
    withdrawal = status.withdrawal
    if status.state is ProposalState.withdrawn and withdrawal is not None:
        line = f"{word} by {who(withdrawal.actor)} at {withdrawal.at:%Y-%m-%d %H:%M} UTC"
        if withdrawal.reason:
            line += f": {withdrawal.reason}"
        if status.decisions:
            line += "\nVotes before: " + ", ".join(_vote(d) for d in status.decisions)
        return line
    decision = status.final_decision
    if decision is None:
        return word
    override = " (override)" if decision.override else ""
    line = (
        f"{word} by {who(decision.reviewer)}{override} at {decision.decided_at:%Y-%m-%d %H:%M} UTC"
    )
    if decision.text:
        line += f"\n>{decision.text}"
    if decision.comment:
        line += f"\n_{decision.comment}_"
    others = [d for d in status.decisions if d is not decision]
    if others:
        line += "\n" + ", ".join(f"{_vote(d)} {d.decided_at:%Y-%m-%d %H:%M}" for d in others)
    return line


def fallback_text(status: ProposalStatus) -> str:
    draft = status.proposal.draft
    target = f" {draft.target}" if draft.target else ""
    return f"Proposal {status.proposal.id}: {draft.kind.value}{target} ({status.state.value})"


def _view_metadata(workflow_id: str, proposal_id: str, channel: str, ts: str) -> str:
    return f"{action_value(workflow_id, proposal_id)}|{channel}|{ts}"


def parse_view_metadata(metadata: str) -> tuple[str, str, str, str]:
    """workflow id, proposal id, channel and message ts of a decision modal."""
    parts = metadata.split("|")
    round_id = round_id_of(parts[0])
    if len(parts) != 4 or round_id is None or not is_proposal_of(round_id, parts[1]):
        raise ValueError(f"not an amend modal: {metadata[:200]!r}")
    return parts[0], parts[1], parts[2], parts[3]


def _comment_input(label: str) -> InputBlock:
    return InputBlock(
        block_id="comment",
        label=label,
        optional=True,
        element=PlainTextInputElement(action_id="comment", multiline=True, max_length=2000),
    )


def _title_line(status: ProposalStatus) -> SectionBlock:
    draft = status.proposal.draft
    return SectionBlock(
        text=MarkdownTextObject(
            text=_clip(f"*{status.proposal.id}* ({draft.kind.value} {draft.target or 'new'})")
        )
    )


def _decision_view(
    callback_id: str,
    title: str,
    submit: str,
    workflow_id: str,
    status: ProposalStatus,
    channel: str,
    ts: str,
    inputs: list[Block],
) -> View:
    """A decision modal; its metadata names the round, proposal and message."""
    return View(
        type="modal",
        callback_id=callback_id,
        private_metadata=_view_metadata(workflow_id, status.proposal.id, channel, ts),
        title=title,
        submit=submit,
        close="Cancel",
        blocks=[_title_line(status), *inputs],
    )


def modify_view(
    workflow_id: str,
    status: ProposalStatus,
    channel: str,
    ts: str,
    current: Principle | None,
) -> View:
    """The modify modal: the current text to read, the proposed text to edit.

    `current` is the principle as the round's base version has it (None for
    an addition); the reviewer edits the proposed wording, not the old one.
    """
    draft = status.proposal.draft
    shown = (
        f"*Current text of {current.id}. {current.title}*\n>{_one_line(current.text, 2900)}"
        if current is not None
        else "*New principle*: there is no current text."
    )
    text = InputBlock(
        block_id="text",
        label="Proposed text (edit it to adopt your wording)",
        element=PlainTextInputElement(
            action_id="text",
            multiline=True,
            initial_value=draft.text or "",
            max_length=2000,
        ),
    )
    return _decision_view(
        MODIFY_CALLBACK,
        "Modify proposal",
        "Accept modified",
        workflow_id,
        status,
        channel,
        ts,
        [SectionBlock(text=MarkdownTextObject(text=_clip(shown))), text, _comment_input("Comment")],
    )


def reject_view(workflow_id: str, status: ProposalStatus, channel: str, ts: str) -> View:
    return _decision_view(
        REJECT_CALLBACK,
        "Reject proposal",
        "Reject",
        workflow_id,
        status,
        channel,
        ts,
        [_comment_input("Reason (optional)")],
    )


def reminder_text(pending: list[ProposalStatus], number: int, escalate_to: str | None) -> str:
    ids = ", ".join(p.proposal.id for p in pending)
    text = f"Reminder {number}: {len(pending)} proposal(s) still wait for a decision ({ids})."
    if escalate_to:
        mention = f"<#{escalate_to}>" if escalate_to.startswith("C") else f"<@{escalate_to}>"
        text += f" Escalated to {mention}."
    return text


def _outcome(status: ProposalStatus) -> str:
    """One proposal's outcome in a line of the round summary."""
    draft = status.proposal.draft
    target = f" {draft.target}" if draft.target else ""
    head = f"• `{status.proposal.id}` {draft.kind.value}{target}: "
    withdrawal = status.withdrawal
    if status.state is ProposalState.withdrawn and withdrawal is not None:
        why = f" ({withdrawal.reason})" if withdrawal.reason else ""
        return f"{head}withdrawn by {who(withdrawal.actor)}{why}"
    decision = status.final_decision
    if not status.settled or decision is None:
        return f"{head}{status.state.value}"
    override = " (override)" if decision.override else ""
    return f"{head}{status.state.value} by {who(decision.reviewer)}{override}"


def summary_text(
    round_id: str,
    state: str,
    proposals: list[ProposalStatus],
    result_version: int | None,
    round_url: str | None = None,
) -> str:
    """The round summary: the tally, each proposal's outcome, and a link to the round page."""
    counts: dict[str, int] = {}
    for p in proposals:
        counts[p.state.value] = counts.get(p.state.value, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no proposals"
    version = f"; new constitution v{result_version}" if result_version else ""
    lines = [f"Round `{round_id}` review ended ({state}): {tally}{version}."]
    lines += [_outcome(p) for p in proposals]
    if round_url:
        lines.append(f"<{round_url}|Round page: proposals, votes and retraining>")
    return "\n".join(lines)


def digest_text(round_id: str, pending: list[ProposalStatus], number: int) -> str:
    """The daily digest: what still waits, one line each."""
    lines = [f"Daily digest {number} for round `{round_id}`: {len(pending)} proposal(s) pending."]
    for p in pending:
        draft = p.proposal.draft
        target = f" {draft.target}" if draft.target else ""
        votes = f", {len(p.decisions)} of {p.accepts_needed} votes" if p.decisions else ""
        lines.append(f"• {p.proposal.id}: {draft.kind.value}{target}{votes}")
    return "\n".join(lines)
