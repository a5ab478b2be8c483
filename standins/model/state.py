"""What the model stand-in remembers between requests, and how a route reaches it.

All of it lives in one `ModelServerState` per app, on `app.state.standin`,
so two stand-ins in one process (a test's and the dev stack's) never share
files, jobs or faults, and a test can read the state directly. Routes take
it through the `ServerState` dependency rather than from a closure.

The records (`StoredFile`, `FineTuningJob`, `Batch`) write themselves in
OpenAI's JSON shapes, so every route that hands one out says the same thing.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from standins.model.config import ScriptedModelConfig


def digest(*parts: object) -> str:
    """A stable hex digest of `parts`, so ids and seeds repeat when the calls do."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


@dataclass
class StoredFile:
    """An uploaded (or stand-in-written) file: training data, batch input or output."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def as_json(self) -> dict[str, Any]:
        """The File object, as the Files API hands it out."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class JobEvent:
    """One line of a fine-tuning job's event log, which amend records in the ledger."""

    id: str
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The `fine_tuning.job.event` object."""
        return {
            "object": "fine_tuning.job.event",
            "id": self.id,
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "data": self.data,
            "type": self.type,
        }


@dataclass
class FineTuningJob:
    """A fine-tuning job and where its scripted outcome has taken it.

    `retrieves` counts polls, because the job advances when it is polled, not
    with the clock: a test decides how long training "takes".
    """

    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    method: dict[str, Any]
    hyperparameters: dict[str, Any]
    metadata: dict[str, str] | None
    created_at: int
    status: str = "validating_files"
    outcome: str = "succeed"
    retrieves: int = 0
    validated: bool = False
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    result_files: list[str] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)

    def as_json(self, organization_id: str) -> dict[str, Any]:
        """The `fine_tuning.job` object, owned by the configured organisation."""
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": organization_id,
            "result_files": list(self.result_files),
            "status": self.status,
            "validation_file": self.validation_file,
            "training_file": self.training_file,
            "hyperparameters": self.hyperparameters,
            "method": self.method,
            "trained_tokens": self.trained_tokens,
            "error": self.error,
            "integrations": [],
            "seed": self.seed,
            "estimated_finish": None,
            "user_provided_suffix": self.suffix,
            "metadata": self.metadata,
        }


@dataclass
class Batch:
    """A Batch API job: chat completions answered from an input file, in the background."""

    id: str
    input_file_id: str
    endpoint: str
    created_at: int
    metadata: dict[str, Any] | None = None
    status: str = "validating"
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    request_counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    task: asyncio.Task[None] | None = None

    def as_json(self) -> dict[str, Any]:
        """The Batch object, as the Batch API hands it out."""
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.created_at + 86_400,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": self.cancelled_at,
            "request_counts": dict(self.request_counts),
            "metadata": self.metadata,
        }


class ModelServerState:
    """Everything the stand-in remembers, and its configuration.

    Ids come from a counter hashed with the request, so a test that makes the
    same calls sees the same ids. `reset` forgets what was done but keeps the
    configuration and the concurrency slots, as `POST /_standin/reset` should.
    """

    def __init__(self, config: ScriptedModelConfig) -> None:
        """Start empty, with `config`'s concurrency limit as the completion slots."""
        self.config = config
        self.slots = asyncio.Semaphore(config.max_concurrency or 1_000_000)
        self.reset()

    def reset(self) -> None:
        """Forget every file, job, batch, fault and count."""
        self.counter = 0
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, FineTuningJob] = {}
        self.batches: dict[str, Batch] = {}
        self.faults: deque[str] = deque()
        self.task_faults: dict[str, deque[str]] = {}
        self.requests: Counter[str] = Counter()
        self.tasks: Counter[str] = Counter()
        # How each chat completion asked to be answered: a response_format
        # type, "tools", or "text"; counted before any refusal.
        self.formats: Counter[str] = Counter()
        self.retry_after_s = 1.0  # what the `rate_limit` fault's Retry-After says
        self.models: Counter[str] = Counter()
        self.faults_served: Counter[str] = Counter()
        self.fine_tuned_models: list[str] = []
        self.overcautious_models: set[str] = set()
        self.fine_tune_outcomes: deque[str] = deque()
        self.in_flight = 0
        self.peak_in_flight = 0
        self.bodies_seen = 0
        self.sampled_bodies: list[dict[str, Any]] = []
        self._sampler = random.Random(0)

    def sample_request(self, body: dict[str, Any]) -> None:
        """Keep `body` in the request sample with the chance every body seen so
        far has (Vitter's algorithm R), so the sample stays uniform over them
        all in memory of its fixed size."""
        size = self.config.request_sample_size
        if not size:
            return
        self.bodies_seen += 1
        if len(self.sampled_bodies) < size:
            self.sampled_bodies.append(body)
            return
        slot = self._sampler.randrange(self.bodies_seen)
        if slot < size:
            self.sampled_bodies[slot] = body

    def new_id(self, prefix: str, length: int, *seed: object) -> str:
        """A fresh OpenAI-style id (`prefix` and `length` hex digits), repeatable per run."""
        self.counter += 1
        return prefix + digest(self.counter, *seed)[:length]

    def stats(self) -> dict[str, Any]:
        """What `GET /_standin/stats` answers: the counts a test asserts on."""
        return {
            "requests": dict(self.requests),
            "tasks": dict(self.tasks),
            "formats": dict(self.formats),
            "models": dict(self.models),
            "pending_faults": list(self.faults),
            "faults_served": dict(self.faults_served),
            "files": len(self.files),
            "fine_tuning_jobs": len(self.jobs),
            "fine_tuning_jobs_by_status": dict(Counter(j.status for j in self.jobs.values())),
            "peak_in_flight": self.peak_in_flight,
        }


async def server_state(request: Request) -> ModelServerState:
    """The state of the app serving `request`, for routes to depend on.

    Async so FastAPI runs it on the event loop instead of a worker thread.
    """
    state: ModelServerState = request.app.state.standin
    return state


ServerState = Annotated[ModelServerState, Depends(server_state)]
"""A route parameter of this type receives its app's `ModelServerState`."""
