"""How the model stand-in behaves: the knobs tests and the dev stack turn.

Frozen, so a running stand-in's behaviour cannot drift under a test; what a
test changes while the stand-in runs (faults, fine-tuning outcomes) goes
through the `/_standin` control routes instead.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

RefusalWording = Literal["openai", "unprocessable", "plain"]
"""How the stand-in refuses what it is configured without, as servers differ.

`openai`: a 400 naming the parameter (`response_format`, `tools`), as OpenAI
does; `unprocessable`: a 422 with a request-validation body, as FastAPI-based
servers (vLLM's front end among them) answer; `plain`: a 400 whose message
names neither the parameter nor the feature, as llama.cpp's and Ollama's
servers often word theirs.
"""


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
    request_sample_size: int = Field(
        default=0,
        ge=0,
        description="Keep a uniform sample of this many chat completion request bodies "
        "(reservoir sampling, seeded, so a run is repeatable), answered at "
        "GET /_standin/requests/sample: the calls a workload made, for a benchmark to "
        "replay. 0: keep none.",
    )
    timeout_fault_s: float = Field(
        default=30.0, ge=0, description="How long the 'timeout' fault holds the answer."
    )
    structured_outputs: bool = Field(
        default=True,
        description="False: refuse json_schema response formats (worded as `refusal_wording` "
        "says), as servers without structured outputs do.",
    )
    json_mode: bool = Field(default=True, description="False: refuse json_object response formats.")
    tool_calling: bool = Field(default=True, description="False: refuse requests that offer tools.")
    refusal_wording: RefusalWording = Field(
        default="openai", description="How a refused feature is answered (see RefusalWording)."
    )
    fine_tuning: bool = Field(
        default=True, description="False: no /v1/fine_tuning routes (404), as most servers."
    )
    batch_api: bool = Field(default=True, description="False: no /v1/batches routes (404).")
    request_ids: bool = Field(
        default=True, description="False: answers carry no x-request-id header."
    )
    models: tuple[str, ...] = Field(
        default=("amend-base", "amend-proposer", "amend-grader"),
        description="Listed by GET /v1/models; chat accepts any model name.",
    )
    organization_id: str = "org-amend-stand-in"
