"""A constitution as a document people edit, and the versions operators make.

The document is Markdown (the format `render_markdown` writes) or JSON.
Parsing names the line (Markdown) or field (JSON) that is wrong, so an
operator can fix the file, and an import never silently reuses a retired id.
A revert (a rollback) is the one way an earlier version's principles, retired
ids included, come back: as a new version, so the history is never rewritten.
"""

from __future__ import annotations

import json
import re

from pydantic import Field, ValidationError

from constitution.models import ConstitutionVersion, Frozen, Principle

PRINCIPLE_LINE = re.compile(
    r"^(?P<id>P[0-9]{1,4})\.\s+\*\*(?P<title>.+?)\*\*(?P<protected>\s+\(protected\))?:\s*(?P<text>.+)$"
)


class DocumentError(ValueError):
    """A constitution document that cannot be read; the message says where."""


class Provenance(Frozen):
    """Who made a version by hand (an import or a revert), from what, and why.

    Versions a round makes name their round instead; these name a person, so
    the log and a principle's lineage never show a change nobody owns.
    """

    actor: str = Field(min_length=1, max_length=200, description="Such as operator:alice.")
    source: str | None = Field(
        default=None, max_length=1000, description="The file (or API call) it was read from."
    )
    reason: str | None = Field(default=None, max_length=2000, description="Why, in their words.")


def principles_hash(principles: tuple[Principle, ...]) -> str:
    """The content hash a version with these principles has, whatever its number.

    An import compares it with every stored version's, so a document that
    repeats an earlier version is recognised as that version.
    """
    try:
        return ConstitutionVersion(number=1, principles=principles).content_hash
    except ValidationError as error:
        raise DocumentError(error.errors()[0]["msg"]) from error


def parse_markdown(text: str) -> tuple[Principle, ...]:
    """Principles from Markdown, one `P1. **Title** (protected): text` per line.

    Headings, blank lines and comments (`<!-- -->`) are skipped; any other line
    that does not fit is refused with its line number.
    """
    principles: list[Principle] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("<!--"):
            continue
        match = PRINCIPLE_LINE.match(line)
        if match is None:
            raise DocumentError(
                f"line {number}: expected 'P<n>. **Title**: text' or "
                f"'P<n>. **Title** (protected): text', got {line[:60]!r}"
            )
        try:
            principles.append(
                Principle(
                    id=match["id"],
                    title=match["title"].strip(),
                    text=match["text"].strip(),
                    protected=match["protected"] is not None,
                )
            )
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(str(p) for p in problem["loc"])
            raise DocumentError(f"line {number}: {field}: {problem['msg']}") from error
    if not principles:
        raise DocumentError("the document has no principles")
    return tuple(principles)


def parse_json(text: str) -> tuple[Principle, ...]:
    """Principles from JSON, as an exported version or a bare list of principles.

    An exported version is an object with the list under `"principles"`; a bad
    principle is named by its index and field.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DocumentError(f"line {error.lineno}: not valid JSON: {error.msg}") from error
    items = data.get("principles") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise DocumentError("expected a list of principles or an object with 'principles'")
    principles: list[Principle] = []
    for index, item in enumerate(items):
        try:
            principles.append(Principle.model_validate(item))
        except ValidationError as error:
            problem = error.errors()[0]
            field = ".".join(str(p) for p in problem["loc"])
            raise DocumentError(f"principles[{index}].{field}: {problem['msg']}") from error
    return tuple(principles)


def imported_version(
    principles: tuple[Principle, ...], latest: ConstitutionVersion | None
) -> ConstitutionVersion:
    """The version an imported document makes, numbered after the latest (or 1 if none).

    Its parent is the latest version, and every id the latest had but the
    document lacks is retired. An id retired before cannot come back.
    """
    if latest is None:
        try:
            return ConstitutionVersion(number=1, principles=principles)
        except ValidationError as error:
            raise DocumentError(error.errors()[0]["msg"]) from error
    ids = {p.id for p in principles}
    revived = sorted(ids & set(latest.retired))
    if revived:
        raise DocumentError(
            f"{', '.join(revived)} {'was' if len(revived) == 1 else 'were'} retired and "
            "cannot be used again; give the principle a new id"
        )
    dropped = [p.id for p in latest.principles if p.id not in ids]
    try:
        return ConstitutionVersion(
            number=latest.number + 1,
            principles=principles,
            parent_hash=latest.content_hash,
            retired=(*latest.retired, *dropped),
        )
    except ValidationError as error:
        raise DocumentError(error.errors()[0]["msg"]) from error


def reverted_version(
    earlier: ConstitutionVersion, latest: ConstitutionVersion
) -> ConstitutionVersion:
    """The version a revert to `earlier` makes: its principles, numbered after `latest`.

    Its parent is `latest`, as for any change. Ids `latest` has and `earlier`
    lacks are retired; ids `earlier` has are live again even if retired since,
    because they come back with the very text they had (an import refuses them:
    a document could give an old id new words). No id is given out twice
    either way, since new ids are counted past live and retired ones alike.
    """
    ids = {p.id for p in earlier.principles}
    dropped = [p.id for p in latest.principles if p.id not in ids]
    retired = tuple(i for i in dict.fromkeys((*latest.retired, *dropped)) if i not in ids)
    return ConstitutionVersion(
        number=latest.number + 1,
        principles=earlier.principles,
        parent_hash=latest.content_hash,
        retired=retired,
    )
