"""The versioned prompt files amend sends to models, and how one is read.

Each file is `<name>.v<N>.md`; a change to what a model is asked is a new file
with the next version, and the version is recorded with every output it
produced. A prompt whose answer is structured ends with an `<example>` of that
answer's shape, which a model reading JSON mode or a tool call needs as much as
the schema (`tests/unit` checks every example against its schema).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

_EXAMPLE = re.compile(r"<example>\s*(.*?)\s*</example>", re.DOTALL)


@dataclass(frozen=True)
class Prompt:
    """A versioned prompt file of `activities/prompts/`; its version is recorded
    with every output it produced."""

    name: str
    text: str

    @classmethod
    def load(cls, name: str) -> Prompt:
        """The prompt file `<name>.md`, e.g. `propose.v3`."""
        return cls(name, (resources.files("activities.prompts") / f"{name}.md").read_text())

    @property
    def example(self) -> Any:
        """The JSON of the prompt's `<example>` block, or None when it has none."""
        found = _EXAMPLE.search(self.text)
        return json.loads(found.group(1)) if found else None
