"""The sample constitution, evidence and prompt sets that ship with amend.

They are package data so `amend demo` and the tests run on a fresh install;
operators replace them with their own files.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from constitution.models import ConstitutionVersion, EvidenceItem

DATA = resources.files("constitution") / "data"


class EvidenceFileError(ValueError):
    """An evidence file that cannot be read, with the line that failed."""


def sample_constitution() -> ConstitutionVersion:
    return ConstitutionVersion.model_validate_json(DATA.joinpath("constitution.json").read_text())


def sample_path(name: str) -> Path:
    return Path(str(DATA.joinpath(name)))


def parse_evidence(text: str, source: str) -> list[EvidenceItem]:
    """Parse JSONL evidence, naming the line and field of the first bad item."""
    items: list[EvidenceItem] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = EvidenceItem.model_validate(json.loads(line))
        except json.JSONDecodeError as error:
            raise EvidenceFileError(f"{source}:{number}: not JSON ({error.msg})") from error
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "item"
            raise EvidenceFileError(f"{source}:{number}: {field}: {first['msg']}") from error
        if item.id in seen:
            raise EvidenceFileError(f"{source}:{number}: duplicate evidence id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


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
