"""What a model server can do, and what a round needs of it.

OpenAI-compatible servers differ: many lack `json_schema` structured outputs,
the fine-tuning API, the Batch API or `x-request-id`, and each words its errors
its own way. So amend never reads an error's wording: a worker probes each
server (base URL and model) once, with cheap requests whose answers are judged
by their status and shape alone, and keeps what it found. These are the pure
parts: the record of a server's capabilities, the order in which output modes
are preferred, and the preflight judgement of whether a round's training can
run there, in words an operator can act on.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from constitution.models import TrainingSpec


class OutputMode(StrEnum):
    """How structured output is asked of a model; `auto` takes the best the server offers."""

    auto = "auto"
    json_schema = "json_schema"
    """Structured outputs: the server holds the answer to the schema (`response_format`)."""
    json_object = "json_object"
    """JSON mode: the prompt carries the schema and an example; the answer is validated here."""
    tools = "tools"
    """Tool calling: one function whose parameters are the schema; its arguments are the answer."""


PREFERRED_MODES: tuple[OutputMode, ...] = (
    OutputMode.json_schema,
    OutputMode.json_object,
    OutputMode.tools,
)
"""Best first: the server's own guarantee beats validation here, and JSON mode
asks less of a small model than choosing to call a function."""


class CapabilityProbe(BaseModel):
    """The answer a capability probe asks for: the smallest object that shows the mode works."""

    model_config = ConfigDict(extra="forbid")
    ok: bool


class ServerCapabilities(BaseModel):
    """What one model server offers one model, as the worker found it.

    A capability is None when it was not probed (an output mode fixed by
    settings needs no probe). `evidence` says, per capability, what the probe
    saw ("200", "404 on /v1/fine_tuning/jobs"), for `amend doctor` and for the
    reasons a round is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    json_schema: bool | None = None
    json_object: bool | None = None
    tools: bool | None = None
    batch_api: bool | None = None
    files: bool | None = None
    fine_tuning: bool | None = None
    request_ids: bool | None = Field(
        default=None, description="The server names each request in an `x-request-id` header."
    )
    output_mode: OutputMode | None = Field(
        default=None, description="The mode structured calls use; None: the server offers none."
    )
    mode_from_settings: bool = False
    evidence: dict[str, str] = Field(default_factory=dict)

    def offers(self, mode: OutputMode) -> bool | None:
        """Whether the server offers an output mode (None: not probed)."""
        return {
            OutputMode.json_schema: self.json_schema,
            OutputMode.json_object: self.json_object,
            OutputMode.tools: self.tools,
        }.get(mode)

    def best_mode(self, *, after: OutputMode | None = None) -> OutputMode | None:
        """The preferred output mode the server offers, or the next one after `after`."""
        modes = PREFERRED_MODES
        if after is not None and after in modes:
            modes = modes[modes.index(after) + 1 :]
        return next((mode for mode in modes if self.offers(mode)), None)


FINE_TUNING_PATH = "/v1/fine_tuning/jobs"
BATCH_PATH = "/v1/batches"


def preflight_problems(capabilities: ServerCapabilities, training: TrainingSpec) -> list[str]:
    """Why a round's training could not run on this model server, or nothing.

    Checked at round start, so a round is refused before any reviewer spends
    time on proposals that could never be trained on. An HTTP trainer's
    reachability is the trainer's own check (`activities.finetune`).
    """
    problems: list[str] = []
    server = capabilities.base_url
    if capabilities.output_mode is None:
        problems.append(
            f"the model server at {server} offers model {capabilities.model} none of "
            "structured outputs (json_schema), JSON mode or tool calling, so no proposal can "
            "be read from it; use a server or model that offers one"
        )
    if training.backend == "openai":
        if capabilities.fine_tuning is False:
            seen = capabilities.evidence.get("fine_tuning", f"404 on {FINE_TUNING_PATH}")
            problems.append(
                f"the model server at {server} has no fine-tuning API ({seen}); "
                "set training.backend: http, or use a server with fine-tuning"
            )
        elif capabilities.files is False:
            seen = capabilities.evidence.get("files", "no files API")
            problems.append(
                f"the model server at {server} has no files API ({seen}), which fine-tuning "
                "uploads the dataset to; set training.backend: http, or use a server with it"
            )
    if training.use_batch_api and capabilities.batch_api is False:
        seen = capabilities.evidence.get("batch_api", f"404 on {BATCH_PATH}")
        problems.append(
            f"the model server at {server} has no Batch API ({seen}); "
            "set training.use_batch_api: false, or use a server with batches"
        )
    return problems


__all__ = [
    "BATCH_PATH",
    "FINE_TUNING_PATH",
    "PREFERRED_MODES",
    "CapabilityProbe",
    "OutputMode",
    "ServerCapabilities",
    "preflight_problems",
]
