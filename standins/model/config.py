"""How the model stand-in behaves: the knobs tests and the dev stack turn.

Frozen, so a running stand-in's behaviour cannot drift under a test; what a
test changes while the stand-in runs (faults, fine-tuning outcomes) goes
through the `/_standin` control routes instead.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ScriptedModelConfig(BaseModel):
    """How the scripted model stand-in behaves; the defaults suit the dev stack.

    Latency and concurrency make it slow the way a loaded server is, for the
    benchmarks; `structured_outputs=False` plays a server without them, so the
    client's JSON-mode fallback is exercised.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str | None = Field(
        default=None,
        description="When set, /v1 requests need 'Authorization: Bearer <key>' or get a 401.",
    )
    fine_tune_polls_to_finish: int = Field(
        default=2,
        ge=0,
        description="A fine-tuning job reports 'succeeded' on this retrieve; 0: at creation.",
    )
    latency_s: float = Field(default=0.0, ge=0, description="Added to every chat completion.")
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Chat completions served at once; more wait their turn, as on a real "
        "server at capacity. With latency_s this fixes the capacity: "
        "max_concurrency / latency_s requests per second.",
    )
    timeout_fault_s: float = Field(
        default=30.0, ge=0, description="How long the 'timeout' fault holds the answer."
    )
    structured_outputs: bool = Field(
        default=True,
        description="False: refuse json_schema response formats with a 400, as servers "
        "without structured outputs do, so clients fall back to JSON mode.",
    )
    models: tuple[str, ...] = Field(
        default=("amend-base", "amend-proposer", "amend-grader"),
        description="Listed by GET /v1/models; chat accepts any model name.",
    )
    organization_id: str = "org-amend-stand-in"
