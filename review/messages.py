"""The one Slack renderer: proposal messages, the modify modal, reminders and
round summaries, built with `slack_sdk.models.blocks`.

Buttons carry `<workflow id>|<proposal id>` as their value, so an interaction
names the round it belongs to without any lookup, even weeks later.
"""

from __future__ import annotations

import difflib

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from constitution import ConstitutionVersion, Proposal, ProposalKind, ProposalState
from constitution.contracts import ProposalStatus

ACTIONS_BLOCK = "decide"
MODIFY_CALLBACK = "modify_proposal"
SECTION_LIMIT = 2900  # Slack's section text limit is 3000 characters

STATE_WORDS = {
    ProposalState.accepted: ":white_check_mark: Accepted",
    ProposalState.modified: ":pencil2: Accepted with changes",
    ProposalState.rejected: ":x: Rejected",
    ProposalState.withdrawn: ":heavy_minus_sign: Withdrawn",
}


def action_value(workflow_id: str, proposal_id: str) -> str:
    return f"{workflow_id}|{proposal_id}"


def parse_action_value(value: str) -> tuple[str, str]:
    workflow_id, sep, proposal_id = value.partition("|")
    if not sep or not workflow_id.startswith("round-") or not proposal_id:
        raise ValueError(f"not an amend action value: {value!r}")
    return workflow_id, proposal_id


def _clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def proposed_change(status: ProposalStatus, constitution: ConstitutionVersion) -> str:
    """The change as a readable diff: current text, then proposed text."""
    draft = status.proposal.draft
    current = constitution.principle(draft.target) if draft.target else None
    if draft.kind is ProposalKind.add:
        return f"*New principle: {draft.title}*\n>{draft.text}"
    if current is None:
        return f"*{draft.kind.value} {draft.target}* (principle not found)"
    if draft.kind is ProposalKind.retire:
        return f"*Retire {current.id}. {current.title}*\n~{current.text}~"
    diff = difflib.ndiff([current.text], [draft.text or ""])
    lines = [line for line in diff if not line.startswith("?")]
    return (
        f"*{draft.kind.value.capitalize()} {current.id}. {current.title}*\n```"
        + "\n".join(lines)
        + "```"
    )


def proposal_blocks(
    workflow_id: str,
    status: ProposalStatus,
    constitution: ConstitutionVersion,
    dashboard_url: str | None = None,
) -> list[Block]:
    proposal = status.proposal
    draft = proposal.draft
    blocks: list[Block] = [
        HeaderBlock(text=_clip(f"Proposal {proposal.id}: {draft.kind.value}", 150)),
        SectionBlock(text=MarkdownTextObject(text=_clip(proposed_change(status, constitution)))),
        SectionBlock(text=MarkdownTextObject(text=_clip(f"*Why:* {draft.rationale}"))),
    ]
    scrutiny = scrutiny_text(proposal)
    if scrutiny:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(scrutiny))))
    facts = [f"Round `{proposal.round_id}`"]
    if draft.evidence:
        facts.append("Evidence: " + ", ".join(f"`{e}`" for e in draft.evidence))
    if draft.touches:
        facts.append("Touches: " + ", ".join(draft.touches))
    facts.append(f"Model `{proposal.model}`, prompt `{proposal.prompt_version}`")
    if dashboard_url:
        facts.append(f"<{dashboard_url}/rounds/{proposal.round_id}|Full round>")
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_clip(" · ".join(facts), 2000))]))
    if status.state is ProposalState.posted:
        value = action_value(workflow_id, proposal.id)
        blocks.append(
            ActionsBlock(
                block_id=ACTIONS_BLOCK,
                elements=[
                    ButtonElement(text="Accept", action_id="accept", value=value, style="primary"),
                    ButtonElement(text="Reject", action_id="reject", value=value, style="danger"),
                    ButtonElement(text="Modify…", action_id="modify", value=value),
                ],
            )
        )
    else:
        blocks.append(DividerBlock())
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(decided_line(status)))))
    return blocks


def scrutiny_text(proposal: Proposal) -> str | None:
    """What the checks flagged, the principles it contradicts and its previewed
    effect: the few lines a reviewer should read before deciding."""
    lines = [f":warning: *{c.check}:* {c.detail}" for c in proposal.checks if c.verdict == "flag"]
    lines += [
        f":left_right_arrow: *Contradicts {c.principle}:* {c.reasoning}"
        for c in proposal.conflicts
        if c.relation == "contradicts"
    ]
    if proposal.impact is not None:
        lines.append(f":crystal_ball: *Impact preview:* {proposal.impact.summary}")
    return "\n".join(lines) or None


def decided_line(status: ProposalStatus) -> str:
    word = STATE_WORDS.get(status.state, status.state.value)
    decision = status.final_decision
    if decision is None:
        return word
    line = f"{word} by <@{decision.reviewer}> at {decision.decided_at:%Y-%m-%d %H:%M} UTC"
    if decision.text:
        line += f"\n>{decision.text}"
    if decision.comment:
        line += f"\n_{decision.comment}_"
    return line


def fallback_text(status: ProposalStatus) -> str:
    draft = status.proposal.draft
    target = f" {draft.target}" if draft.target else ""
    return f"Proposal {status.proposal.id}: {draft.kind.value}{target} ({status.state.value})"


def modify_view(workflow_id: str, status: ProposalStatus, channel: str, ts: str) -> View:
    draft = status.proposal.draft
    return View(
        type="modal",
        callback_id=MODIFY_CALLBACK,
        private_metadata=f"{action_value(workflow_id, status.proposal.id)}|{channel}|{ts}",
        title="Modify proposal",
        submit="Accept modified",
        close="Cancel",
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=_clip(
                        f"*{status.proposal.id}* ({draft.kind.value} {draft.target or 'new'})"
                    )
                )
            ),
            InputBlock(
                block_id="text",
                label="Text to adopt",
                element=PlainTextInputElement(
                    action_id="text",
                    multiline=True,
                    initial_value=draft.text or "",
                    max_length=2000,
                ),
            ),
            InputBlock(
                block_id="comment",
                label="Comment",
                optional=True,
                element=PlainTextInputElement(action_id="comment", multiline=True, max_length=2000),
            ),
        ],
    )


def reminder_text(pending: list[ProposalStatus], number: int, escalate_to: str | None) -> str:
    ids = ", ".join(p.proposal.id for p in pending)
    text = f"Reminder {number}: {len(pending)} proposal(s) still wait for a decision ({ids})."
    if escalate_to:
        mention = f"<#{escalate_to}>" if escalate_to.startswith("C") else f"<@{escalate_to}>"
        text += f" Escalated to {mention}."
    return text


def summary_text(
    round_id: str, state: str, proposals: list[ProposalStatus], result_version: int | None
) -> str:
    counts: dict[str, int] = {}
    for p in proposals:
        counts[p.state.value] = counts.get(p.state.value, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no proposals"
    version = f"; new constitution v{result_version}" if result_version else ""
    return f"Round `{round_id}` review ended ({state}): {tally}{version}."
