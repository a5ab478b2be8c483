"""Fine-tune backends: one interface, the OpenAI fine-tuning API and a lab's own
HTTP trainer behind it.

A backend starts a job, reads where it stands, and cancels it. It never waits:
waiting is the workflow's retry policy (polling) or the trainer's signed call
back to the gateway (asynchronous completion), so a job that runs for days
costs a handful of history events, not one per poll.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import openai
from openai import AsyncOpenAI

from constitution.contracts import FineTuneInput, FineTuneJob

FINISHED = frozenset({"succeeded", "failed", "cancelled"})


class FineTuneRefused(Exception):
    """The backend refused the job outright (a bad request, not a busy server)."""


@dataclass(frozen=True)
class JobState:
    """Where a job stands, with the events the backend reported since the last look."""

    status: str
    fine_tuned_model: str | None = None
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class FineTuneBackend(Protocol):
    name: str

    async def start(self, request: FineTuneInput, dataset: bytes) -> FineTuneJob: ...

    async def look(self, job: FineTuneJob) -> JobState: ...

    async def cancel(self, job_id: str) -> None: ...


class OpenAIFineTuning:
    """The OpenAI fine-tuning API (`files`, `fine_tuning.jobs`), SFT or DPO."""

    name = "openai"

    def __init__(self, client: AsyncOpenAI) -> None:
        self.client = client

    async def start(self, request: FineTuneInput, dataset: bytes) -> FineTuneJob:
        # A worker that died between creating the job and recording it left a
        # job tagged with the round: take that one rather than start a second.
        # A resumed round replacing a failed job takes only one that may yet succeed.
        tag = {"amend_round": request.round_id}
        passed_over = {"cancelled", "failed"} if request.replace_failed else {"cancelled"}
        earlier = await self.client.fine_tuning.jobs.list(metadata=tag, limit=10)
        for found in earlier.data:
            if found.status not in passed_over:
                return FineTuneJob(job_id=found.id, status=found.status, backend=self.name)
        uploaded = await self.client.files.create(
            file=(f"{request.dataset.sha256}.jsonl", dataset), purpose="fine-tune"
        )
        training = request.training
        method: dict[str, Any] = {
            "type": training.method,
            training.method: {"hyperparameters": training.hyperparameters()},
        }
        try:
            job = await self.client.fine_tuning.jobs.create(
                model=training.base_model,
                training_file=uploaded.id,
                suffix=request.round_id[:40],
                method=method,  # type: ignore[arg-type]
                metadata=tag,
            )
        except openai.BadRequestError as error:
            raise FineTuneRefused(error.message) from error
        return FineTuneJob(job_id=job.id, status=job.status, backend=self.name)

    async def look(self, job: FineTuneJob) -> JobState:
        found = await self.client.fine_tuning.jobs.retrieve(job.job_id)
        page = await self.client.fine_tuning.jobs.list_events(job.job_id, limit=50)
        events = [
            {
                "id": e.id,
                "level": e.level,
                "message": e.message,
                "data": e.data if isinstance(e.data, dict) else {},
                "at": datetime.fromtimestamp(e.created_at, UTC),
            }
            for e in reversed(page.data)
        ]
        return JobState(
            status=found.status,
            fine_tuned_model=found.fine_tuned_model,
            error=found.error.message if found.error and found.error.message else None,
            events=events,
        )

    async def cancel(self, job_id: str) -> None:
        with contextlib.suppress(openai.BadRequestError):  # already finished
            await self.client.fine_tuning.jobs.cancel(job_id)


# --------------------------------------------------------------------------- HTTP trainer


class HttpTrainer:
    """A lab's own trainer over HTTP.

    `POST {base}/jobs` with the dataset URI starts a job and answers
    `{"id", "status", "status_url"?}`. With a `status_url` the job is polled
    (`GET` answering `{"status", "fine_tuned_model"?, "error"?}`); without one the
    trainer calls the gateway back when it finishes, carrying the waiting
    activity's task token, which `watch` hands it.
    """

    name = "http"

    def __init__(self, http: httpx.AsyncClient, base_url: str, callback_url: str | None) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.callback_url = callback_url

    async def start(self, request: FineTuneInput, dataset: bytes) -> FineTuneJob:
        training = request.training
        response = await self.http.post(
            f"{self.base_url}/jobs",
            json={
                "round_id": request.round_id,
                "dataset_uri": request.dataset.uri,
                "dataset_sha256": request.dataset.sha256,
                "base_model": training.base_model,
                "method": training.method,
                "hyperparameters": training.hyperparameters(),
            },
        )
        if 400 <= response.status_code < 500:
            raise FineTuneRefused(f"{response.status_code} {response.text[:500]}")
        response.raise_for_status()
        body = response.json()
        return FineTuneJob(
            job_id=str(body["id"]),
            status=str(body.get("status", "queued")),
            backend=self.name,
            poll_url=body.get("status_url"),
        )

    async def look(self, job: FineTuneJob) -> JobState:
        assert job.poll_url is not None
        response = await self.http.get(job.poll_url)
        response.raise_for_status()
        body = response.json()
        return JobState(
            status=str(body["status"]),
            fine_tuned_model=body.get("fine_tuned_model"),
            error=body.get("error"),
        )

    async def unreachable(self) -> str | None:
        """Why the trainer cannot be reached, or None when it answers at all.

        Any HTTP answer, even an error status, shows something listens; only a
        connection that fails or times out means the trainer is not there.
        """
        try:
            await self.http.get(f"{self.base_url}/jobs")
        except httpx.HTTPError as error:
            return (
                f"the trainer at {self.base_url} cannot be reached "
                f"({type(error).__name__}: {error or 'no answer'}); start it, or fix "
                "AMEND_TRAINER_URL"
            )
        return None

    async def watch(self, job: FineTuneJob, task_token: bytes) -> None:
        """Hand the trainer the token of the activity waiting for this job."""
        if self.callback_url is None:
            raise FineTuneRefused(
                f"trainer job {job.job_id} offers no status URL and AMEND_TRAINER_SECRET is "
                "unset, so its callback would be refused; set the secret on the worker and gateway"
            )
        response = await self.http.post(
            f"{self.base_url}/jobs/{job.job_id}/callback",
            json={"url": self.callback_url, "task_token": task_token.hex()},
        )
        response.raise_for_status()

    async def cancel(self, job_id: str) -> None:
        response = await self.http.post(f"{self.base_url}/jobs/{job_id}/cancel")
        if response.status_code != 409:  # 409: already finished
            response.raise_for_status()
