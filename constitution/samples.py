"""The sample constitution, evidence and prompt sets that ship with amend.

They are package data so `amend demo` and the tests run on a fresh install;
operators replace them with their own files. This module reads files (one of
the two in `constitution` that do): the package data under
`constitution/data/`, and (for the tests) an evidence file named to `load_evidence`.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from constitution.evidence import EvidenceFileError, parse_evidence
from constitution.models import ConstitutionVersion, EvidenceItem

DATA = resources.files("constitution") / "data"


def sample_constitution() -> ConstitutionVersion:
    """The constitution that ships with amend: a fresh ledger's version 1 when it is seeded."""
    return ConstitutionVersion.model_validate_json(DATA.joinpath("constitution.json").read_text())


def sample_path(name: str) -> Path:
    """Where a shipped data file lies, for readers that take a path."""
    return Path(str(DATA.joinpath(name)))


def load_evidence(path: str | None) -> list[EvidenceItem]:
    """Evidence from `path`, or the shipped sample; all or nothing, as `parse_evidence`."""
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
