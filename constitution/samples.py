"""The sample constitution, evidence and prompt sets that ship with amend.

They are package data so `amend demo` and the tests run on a fresh install;
operators replace them with their own files.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from constitution.models import ConstitutionVersion, EvidenceItem

DATA = resources.files("constitution") / "data"


class EvidenceFileError(ValueError):
    """An evidence file that cannot be read, with the line that failed."""


def sample_constitution() -> ConstitutionVersion:
    return ConstitutionVersion.model_validate_json(DATA.joinpath("constitution.json").read_text())


def sample_path(name: str) -> Path:
    return Path(str(DATA.joinpath(name)))


Row = TypeVar("Row", bound=BaseModel)


def parse_jsonl(
    text: str, source: str, schema: type[Row], error: type[ValueError], what: str
) -> list[Row]:
    """Parse JSONL rows with an `id`, naming the line and field of the first
    bad one (as `error`), and refusing a repeated id."""
    rows: list[Row] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = schema.model_validate(json.loads(line))
        except json.JSONDecodeError as failure:
            raise error(f"{source}:{number}: not JSON ({failure.msg})") from failure
        except ValidationError as failure:
            first = failure.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "item"
            raise error(f"{source}:{number}: {field}: {first['msg']}") from failure
        key = str(getattr(row, "id", number))
        if key in seen:
            raise error(f"{source}:{number}: duplicate {what} id {key!r}")
        seen.add(key)
        rows.append(row)
    return rows


def parse_evidence(text: str, source: str) -> list[EvidenceItem]:
    """Parse JSONL evidence, naming the line and field of the first bad item."""
    return parse_jsonl(text, source, EvidenceItem, EvidenceFileError, "evidence")


def load_evidence(path: str | None) -> list[EvidenceItem]:
    target = Path(path) if path else sample_path("evidence.jsonl")
    try:
        text = target.read_text()
    except OSError as error:
        raise EvidenceFileError(f"{target}: cannot read evidence ({error.strerror})") from error
    return parse_evidence(text, str(target))


def load_prompts(name: str) -> list[dict[str, str]]:
    """Prompt sets for dataset generation and evaluation (JSONL of id/prompt/kind)."""
    rows = []
    for line in DATA.joinpath(name).read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows
