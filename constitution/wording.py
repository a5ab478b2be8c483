"""Word-level differences between two wordings of a principle.

A reviewer judging an amendment reads what changed in the words, not which
lines differ: a principle is one paragraph, so a line diff marks the whole of
it changed. The pages show these spans side by side (removed words struck
through on the current text, added words marked on the proposed one).
"""

from __future__ import annotations

import difflib
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from constitution.models import ConstitutionVersion

# A word with the whitespace after it, so joining the spans gives the text back.
_TOKEN = re.compile(r"\S+\s*|\s+")


class Change(StrEnum):
    """What happened to a run of words between the two wordings."""

    same = "same"
    removed = "removed"
    added = "added"


class WordSpan(BaseModel):
    """A run of words that changed (or did not) in the same way."""

    model_config = ConfigDict(frozen=True)

    change: Change
    text: str


class WordDiff(BaseModel):
    """Both wordings as spans: `old` holds kept and removed words, `new` kept and added ones.

    Each side joins back to its text, so either can be shown alone.
    """

    model_config = ConfigDict(frozen=True)

    old: tuple[WordSpan, ...]
    new: tuple[WordSpan, ...]

    @property
    def changed(self) -> bool:
        """Whether any word differs."""
        return any(span.change is not Change.same for span in (*self.old, *self.new))


def _words(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _spans(words: list[str], change: Change) -> list[WordSpan]:
    return [WordSpan(change=change, text="".join(words))] if words else []


def _merged(spans: list[WordSpan]) -> tuple[WordSpan, ...]:
    """Neighbouring spans of one kind become one, so markup wraps whole phrases."""
    merged: list[WordSpan] = []
    for span in spans:
        if merged and merged[-1].change is span.change:
            merged[-1] = WordSpan(change=span.change, text=merged[-1].text + span.text)
        else:
            merged.append(span)
    return tuple(merged)


def word_diff(old: str | None, new: str | None) -> WordDiff:
    """The words of `old` and `new`, each marked kept, removed or added.

    Words are compared without their trailing whitespace, so a reflowed
    sentence is not marked changed. A missing text (a new principle's current
    wording, a retired one's proposed wording) diffs as empty.
    """
    a, b = _words(old or ""), _words(new or "")
    matcher = difflib.SequenceMatcher(
        a=[w.strip() for w in a], b=[w.strip() for w in b], autojunk=False
    )
    left: list[WordSpan] = []
    right: list[WordSpan] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            left += _spans(a[i1:i2], Change.same)
            right += _spans(b[j1:j2], Change.same)
        else:
            left += _spans(a[i1:i2], Change.removed)
            right += _spans(b[j1:j2], Change.added)
    return WordDiff(old=_merged(left), new=_merged(right))


class PrincipleChange(BaseModel):
    """One principle from one version to another: how it changed, word by word.

    `change` is added, retired, revised or unchanged; the titles are None on
    the side that lacks the principle.
    """

    model_config = ConfigDict(frozen=True)

    principle_id: str
    change: str
    old_title: str | None
    new_title: str | None
    protected: bool
    text: WordDiff


def principle_changes(old: ConstitutionVersion, new: ConstitutionVersion) -> list[PrincipleChange]:
    """Every principle of either version, in the new version's order, then those it retired."""
    before = {p.id: p for p in old.principles}
    after = {p.id: p for p in new.principles}
    changes: list[PrincipleChange] = []
    for principle in new.principles:
        earlier = before.get(principle.id)
        if earlier is None:
            change = "added"
        elif (earlier.title, earlier.text) == (principle.title, principle.text):
            change = "unchanged"
        else:
            change = "revised"
        changes.append(
            PrincipleChange(
                principle_id=principle.id,
                change=change,
                old_title=earlier.title if earlier else None,
                new_title=principle.title,
                protected=principle.protected,
                text=word_diff(earlier.text if earlier else None, principle.text),
            )
        )
    for principle in old.principles:
        if principle.id not in after:
            changes.append(
                PrincipleChange(
                    principle_id=principle.id,
                    change="retired",
                    old_title=principle.title,
                    new_title=None,
                    protected=principle.protected,
                    text=word_diff(principle.text, None),
                )
            )
    return changes
