"""Prompt sets for retraining: training prompts, and held-out evaluation prompts.

Training data is generated from the first; the candidate is evaluated on the
second. A small set of each ships with amend (package data); a round may name
its own JSONL file instead. A bad line is refused with its file and line number
before any model call is paid for, so an operator can fix the file and start
again.
This module reads the prompt file it is given (or the shipped one); parsing
alone (`parse_prompt_set`) reads nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from constitution.jsonl import parse_jsonl
from constitution.samples import sample_path

SHIPPED_TRAINING_PROMPTS = "training_prompts.jsonl"
SHIPPED_EVAL_PROMPTS = "eval_prompts.jsonl"


class PromptSetError(ValueError):
    """A prompt set that cannot be used, naming the file and line that failed."""


class TrainingPrompt(BaseModel):
    """One prompt training data is generated from; `id` names it in the dataset's manifest."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1, max_length=8000)


class EvalKind(StrEnum):
    """Which rate a held-out prompt counts in: `red_team` the harm rate, `benign` over-refusal."""

    red_team = "red_team"
    benign = "benign"


DEFAULT_CATEGORY = "general"


class EvalPrompt(BaseModel):
    """One held-out prompt that the candidate and the baseline both answer, graded alike.

    `category` names the area it probes (weapons, self-harm, privacy, medical,
    ...): rates are reported per category too, so a gain in one area cannot
    hide a loss in another. Benign prompts carry the area they sit next to.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=64)
    kind: EvalKind
    category: str = Field(
        default=DEFAULT_CATEGORY,
        min_length=1,
        max_length=40,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="Lower-case letters, digits, '-' and '_'; unset: 'general'.",
    )
    prompt: str = Field(min_length=1, max_length=8000)


Row = TypeVar("Row", TrainingPrompt, EvalPrompt)


def parse_prompt_set(text: str, source: str, schema: type[Row]) -> list[Row]:
    """Every line validated; every bad line named by file, line and field."""
    rows = parse_jsonl(text, source, schema, what="prompt", error=PromptSetError)
    if not rows:
        raise PromptSetError(f"{source}: the prompt set is empty")
    return rows


def _read(path: str | None, shipped: str) -> tuple[str, str]:
    target = Path(path) if path else sample_path(shipped)
    try:
        return target.read_text(encoding="utf-8"), str(target)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise PromptSetError(f"{target}: cannot read the prompt set ({reason})") from error


def load_training_prompts(path: str | None = None) -> list[TrainingPrompt]:
    """The training prompts at `path`, or the shipped set; `PromptSetError` names what is wrong."""
    return parse_prompt_set(*_read(path, SHIPPED_TRAINING_PROMPTS), TrainingPrompt)


def load_eval_prompts(path: str | None = None) -> list[EvalPrompt]:
    """The evaluation prompts at `path`, or the shipped set, which must hold both kinds.

    Harm rate and over-refusal each need prompts of their kind; `PromptSetError`
    names a bad line, or the kind that is missing.
    """
    prompts = parse_prompt_set(*_read(path, SHIPPED_EVAL_PROMPTS), EvalPrompt)
    kinds = {p.kind for p in prompts}
    missing = sorted(k.value for k in EvalKind if k not in kinds)
    if missing:
        raise PromptSetError(
            f"{path or SHIPPED_EVAL_PROMPTS}: the evaluation set has no {' or '.join(missing)} "
            "prompts; harm rate and over-refusal each need some"
        )
    return prompts


SHIPPED_CUE_STYLES = "cue_styles.json"

PLAIN = ""
"""The style of a prompt asked as written, with no cue."""


class CueStyle(BaseModel):
    """One way of framing a red-team prompt, to see whether the answer changes with it.

    `template` holds `{prompt}` (and may hold `{number}`, the prompt's place in
    the set, as benchmarks number their items). Cue styles are data: a lab
    adds its own by editing the list, not the code.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=40)
    name: str = Field(min_length=1, max_length=120)
    template: str = Field(min_length=1, max_length=2000)

    def frame(self, prompt: str, number: int) -> str:
        """The prompt as this style puts it; `number` is its place in the set."""
        return self.template.replace("{number}", str(number)).replace("{prompt}", prompt)


class Framing(NamedTuple):
    """One request of an evaluation: a prompt, framed in a cue style, for one sample.

    `style` is a cue style's id, or `PLAIN` for the prompt as written; the
    sample number is the request's seed.
    """

    prompt: EvalPrompt
    style: str
    text: str
    sample: int


def framings(
    prompts: Sequence[EvalPrompt], styles: Sequence[CueStyle], samples: int
) -> list[Framing]:
    """Every prompt as written, `samples` times, and each red-team prompt under every style.

    Both evaluation backends ask exactly these, so their answers pair alike.
    """
    framed = []
    for number, prompt in enumerate(prompts, start=1):
        for sample in range(samples):
            framed.append(Framing(prompt, PLAIN, prompt.prompt, sample))
            if prompt.kind is EvalKind.red_team:
                for style in styles:
                    framed.append(
                        Framing(prompt, style.id, style.frame(prompt.prompt, number), sample)
                    )
    return framed


def load_cue_styles() -> list[CueStyle]:
    """The shipped cue styles; each must put the prompt somewhere."""
    raw = sample_path(SHIPPED_CUE_STYLES).read_text(encoding="utf-8")
    styles = TypeAdapter(list[CueStyle]).validate_json(raw)
    for style in styles:
        if "{prompt}" not in style.template:
            raise PromptSetError(f"{SHIPPED_CUE_STYLES}: cue style {style.id} has no {{prompt}}")
    return styles
