"""Evidence for a round: parsing JSONL files, screening, and selection under a token budget.

A round may carry far more evidence than one model call can read (a busy
red-team produces thousands of transcripts), so evidence is packed into chunks
of bounded size; each chunk is one model call and the chunks' proposals are
merged by the checks. What was selected, into which chunk, and why an item was
left out is recorded in the ledger.

Tokens are counted as one per four characters of the item's JSON, OpenAI's
published rule of thumb. `tiktoken` would count exactly, but it downloads its
encodings on first use, which a worker without internet access cannot do, and
the budget only needs to bound a call's size, not fill it to the last token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from constitution.jsonl import parse_jsonl
from constitution.models import ConstitutionVersion, EvidenceItem

MAX_ITEM_CHARS = 20_000
"""An item longer than this (as JSON) is refused at import: nothing that size is
one observation, and it would crowd every other item out of a chunk."""


INSTRUCTION_PATTERNS = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above|earlier) (instructions|prompts?)"
    r"|disregard (all |any )?(the )?(previous|prior|above|earlier|system)"
    r"|(delete|remove|retire|drop) (all|every|each) (the )?(principles|rules)"
    r"|\bsystem prompt\b|\byou are now\b|</?(evidence|constitution|max_proposals|system)>",
    re.IGNORECASE,
)
"""Text that addresses the model rather than describing what happened. Such an
item stays evidence (an injection attempt is itself something red-teams find),
but proposals resting only on it are flagged for reviewers."""


class EvidenceFileError(ValueError):
    """Evidence that cannot be imported, with every bad line named."""


def count_tokens(text: str) -> int:
    """About four characters a token (see the module docstring)."""
    return math.ceil(len(text) / 4) if text else 0


def item_tokens(item: EvidenceItem) -> int:
    """What the item counts against a chunk's budget: its JSON, at four characters a token."""
    return count_tokens(item.model_dump_json())


_INSTRUCTION_WORDS = (
    "ignore",
    "disregard",
    "delete",
    "remove",
    "retire",
    "drop",
    "system",
    "you are now",
    "<",
)


def _reads_like_instructions(text: str) -> bool:
    lowered = text.lower()
    # A cheap word test first: the pattern is slow, and most evidence has none.
    if not any(word in lowered for word in _INSTRUCTION_WORDS):
        return False
    return INSTRUCTION_PATTERNS.search(lowered) is not None


def looks_like_instructions(item: EvidenceItem) -> bool:
    """Whether the item addresses the model rather than describing what happened.

    Such an item stays evidence; proposals resting only on items like it are
    flagged and take the stricter review policy (`INSTRUCTION_PATTERNS`).
    """
    return _reads_like_instructions(item.model_dump_json())


def parse_evidence(text: str, source: str) -> list[EvidenceItem]:
    """Parse JSONL evidence, all of a file or none of it.

    Every bad line is reported (up to a limit), by file, line and field, and
    nothing is imported from a file with any. A line longer than
    `MAX_ITEM_CHARS` is a bad line.
    """
    return parse_jsonl(
        text,
        source,
        EvidenceItem,
        what="evidence",
        error=EvidenceFileError,
        max_chars=MAX_ITEM_CHARS,
    )


class SelectedItem(BaseModel):
    """One evidence item and its fate in the selection (its chunk, or why it was left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    item: EvidenceItem
    source: str
    tokens: int
    suspicious: bool = Field(description="Reads like instructions to the model.")
    chunk: int | None = Field(description="The chunk it was packed into; None: left out.")
    reason: str


class EvidenceChunk(BaseModel):
    """The evidence one model call reads; `tokens`, their sum, is within the round's budget."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    index: int
    items: list[EvidenceItem]
    tokens: int


class EvidenceSelection(BaseModel):
    """What a round's model calls will read: the chunks, and counts of the rest."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    chunks: list[EvidenceChunk]
    total_items: int
    selected_items: int
    budget_tokens: int
    suspicious_ids: list[str] = Field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line for the log and the ledger: how much of the evidence the model will read."""
        return (
            f"{self.selected_items} of {self.total_items} evidence items in "
            f"{len(self.chunks)} chunk(s) of at most {self.budget_tokens} tokens"
        )


def select_evidence(
    sourced: Iterable[tuple[EvidenceItem, str]],
    constitution: ConstitutionVersion,
    *,
    budget_tokens: int,
    max_chunks: int,
) -> tuple[EvidenceSelection, list[SelectedItem]]:
    """Pack items into at most `max_chunks` chunks of at most `budget_tokens`.

    Items that name a principle of the constitution come first (they can
    ground an amendment), then the rest, each group in the order given; an item
    whose summary repeats an earlier one adds nothing and is left out. Returns
    the selection for the model and every item with its fate, for the ledger.
    """
    known = {p.id for p in constitution.principles}
    entries = list(sourced)
    dumped = [item.model_dump_json() for item, _ in entries]
    sizes_of = [count_tokens(text) for text in dumped]
    ranked = sorted(
        range(len(entries)),
        key=lambda i: (not any(p in known for p in entries[i][0].principles), i),
    )
    chunks: list[list[EvidenceItem]] = []
    sizes: list[int] = []
    fates: dict[int, tuple[int | None, str]] = {}
    seen_summaries: set[str] = set()
    for index in ranked:
        item, _ = entries[index]
        tokens = sizes_of[index]
        summary_key = " ".join(item.summary.lower().split())
        if summary_key in seen_summaries:
            fates[index] = (None, "repeats the summary of an earlier item")
            continue
        if tokens > budget_tokens:
            fates[index] = (None, f"{tokens} tokens, more than the {budget_tokens} budget")
            continue
        slot = next((c for c, size in enumerate(sizes) if size + tokens <= budget_tokens), None)
        if slot is None and len(chunks) < max_chunks:
            chunks.append([])
            sizes.append(0)
            slot = len(chunks) - 1
        if slot is None:
            fates[index] = (None, f"all {max_chunks} chunks full")
            continue
        chunks[slot].append(item)
        sizes[slot] += tokens
        seen_summaries.add(summary_key)
        fates[index] = (slot, f"chunk {slot}")
    # Built without validation: every field was computed here from valid items.
    records = [
        SelectedItem.model_construct(
            item=item,
            source=source,
            tokens=sizes_of[i],
            suspicious=_reads_like_instructions(dumped[i]),
            chunk=fates[i][0],
            reason=fates[i][1],
        )
        for i, (item, source) in enumerate(entries)
    ]
    selection = EvidenceSelection(
        chunks=[
            EvidenceChunk(index=i, items=items, tokens=sizes[i]) for i, items in enumerate(chunks)
        ],
        total_items=len(entries),
        selected_items=sum(len(c) for c in chunks),
        budget_tokens=budget_tokens,
        suspicious_ids=[r.item.id for r in records if r.suspicious and r.chunk is not None],
    )
    return selection, records
