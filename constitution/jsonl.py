"""Operator-supplied JSONL files (evidence, prompt sets): one way to read them.

Every bad line is reported (up to a limit) by file, line and field, so an
operator fixes the file in one pass, and nothing is used from a file with any.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

MAX_REPORTED_ERRORS = 20

Row = TypeVar("Row", bound=BaseModel)


def parse_jsonl(
    text: str,
    source: str,
    schema: type[Row],
    *,
    what: str,
    error: type[ValueError],
    max_chars: int | None = None,
) -> list[Row]:
    """Rows of `schema` from JSONL text, each with a unique `id`; one bad line refuses them all.

    Rows are named `what` in messages, and a line longer than `max_chars` is
    bad. `error` carries every bad line, by `source` and line number (up to
    `MAX_REPORTED_ERRORS` of them).
    """
    rows: list[Row] = []
    seen: set[str] = set()
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        if max_chars is not None and len(line) > max_chars:
            errors.append(
                f"{where}: item is {len(line)} characters, more than the {max_chars} allowed"
            )
            continue
        try:
            row = schema.model_validate(json.loads(line))
        except json.JSONDecodeError as failure:
            errors.append(f"{where}: not JSON ({failure.msg})")
            continue
        except ValidationError as failure:
            first = failure.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "item"
            errors.append(f"{where}: {field}: {first['msg']}")
            continue
        key = str(getattr(row, "id", number))
        if key in seen:
            errors.append(f"{where}: duplicate {what} id {key!r}")
            continue
        seen.add(key)
        rows.append(row)
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = len(errors) - len(shown)
        raise error("\n".join(shown + ([f"... and {more} more bad lines"] if more else [])))
    return rows
