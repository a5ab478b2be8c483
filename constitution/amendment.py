"""Turning decided proposals into a new constitution version, and showing the change."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from constitution.models import (
    ConstitutionVersion,
    Decision,
    DecisionKind,
    Principle,
    Proposal,
    ProposalKind,
)


def sentences(text: str) -> list[str]:
    """A principle's text split after each `.`, `!` or `?`: the unit people edit it in."""
    return [part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part]


def sentence_diff(current: str, proposed: str) -> list[str]:
    """The change from `current` to `proposed`, sentence by sentence.

    Lines start with `- ` (removed), `+ ` (added) or two spaces (kept, for
    context), as `difflib.ndiff` writes them; the Slack message and the CLI
    both show a proposal this way.
    """
    diff = difflib.ndiff(sentences(current), sentences(proposed))
    return [line for line in diff if not line.startswith("?")]


class AmendmentConflict(ValueError):
    """Two accepted amendments cannot both apply to the base version.

    For example one revises a principle another retires.
    """


def apply_amendments(
    base: ConstitutionVersion,
    decided: Sequence[tuple[Proposal, Decision]],
    round_id: str,
) -> ConstitutionVersion:
    """Apply accepted and modified proposals in proposal order.

    Rejections are skipped. A modified decision replaces the proposed text with
    the reviewer's. The new version's parent is the base's content hash.
    """
    principles = list(base.principles)
    retired = list(base.retired)
    new_ids: set[str] = set()
    for proposal, decision in decided:
        if decision.kind is DecisionKind.reject:
            continue
        draft = proposal.draft
        text = decision.text if decision.kind is DecisionKind.modify else draft.text
        if draft.kind is ProposalKind.add:
            new_id = base.next_principle_id(new_ids)
            new_ids.add(new_id)
            assert draft.title is not None and text is not None
            principles.append(Principle(id=new_id, title=draft.title, text=text))
            continue
        index = next((i for i, p in enumerate(principles) if p.id == draft.target), None)
        if index is None:
            raise AmendmentConflict(
                f"proposal {proposal.id} targets {draft.target}, which is not in the constitution"
            )
        current = principles[index]
        if draft.kind is ProposalKind.retire:
            del principles[index]
            retired.append(current.id)
        else:
            if text is None:
                raise AmendmentConflict(f"proposal {proposal.id} has no text to apply")
            principles[index] = current.model_copy(update={"text": text})
    return ConstitutionVersion(
        number=base.number + 1,
        principles=tuple(principles),
        parent_hash=base.content_hash,
        round_id=round_id,
        retired=tuple(retired),
    )


def render_markdown(version: ConstitutionVersion) -> str:
    """The version as Markdown, one principle a line: the form people read, edit and import.

    `documents.parse_markdown` reads it back, and `diff_versions` compares two
    versions through it. Only the number and the principles are written: an
    import takes the parent and the retired ids from the latest version.
    """
    lines = [f"# Constitution v{version.number}", ""]
    for p in version.principles:
        mark = " (protected)" if p.protected else ""
        lines.append(f"{p.id}. **{p.title}**{mark}: {p.text}")
    return "\n".join(lines) + "\n"


def diff_versions(old: ConstitutionVersion, new: ConstitutionVersion) -> str:
    """A unified diff, one principle a line, readable in a terminal or Slack."""
    return "".join(
        difflib.unified_diff(
            render_markdown(old).splitlines(keepends=True),
            render_markdown(new).splitlines(keepends=True),
            fromfile=f"v{old.number}",
            tofile=f"v{new.number}",
        )
    )
