"""Stand-in for a lab's own HTTP trainer.

This is a **stand-in**: it trains nothing. It speaks the HTTP trainer protocol
amend's `http` fine-tune backend uses, so the backend, the gateway's signed
callback and Temporal's asynchronous activity completion run for real:

* `POST /jobs` with the dataset URI starts a "job". In `poll` mode the answer
  names a `status_url`, which reports `running` until it has been read
  `polls_to_finish` times, then `succeeded`; in `callback` mode it names none.
* `POST /jobs/{id}/callback` with `{"url", "task_token"}` (callback mode): after
  `callback_delay_s` (or, when that is unset, once `POST /_standin/jobs/{id}/finish`
  says so) the stand-in posts the outcome to `url`, signed with the shared
  secret, carrying the token. Every callback sent is kept, so a test can
  replay one.
* `POST /jobs/{id}/cancel` cancels (409 once finished).

The fine-tuned model it names starts with `ft:`, so the scripted model
stand-in answers for it as a trained candidate.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict

from constitution.trainer_callback import signed_headers


class TrainerStandInConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["poll", "callback"] = "callback"
    secret: str = "amend-dev-trainer-secret"
    polls_to_finish: int = 2
    callback_delay_s: float | None = 0.2
    public_url: str = "http://127.0.0.1"  # set once the server's port is known


@dataclass
class TrainerJob:
    id: str
    request: dict[str, Any]
    status: str = "running"
    polls: int = 0
    fine_tuned_model: str | None = None
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


def create_app(config: TrainerStandInConfig) -> FastAPI:
    app = FastAPI(title="amend HTTP trainer stand-in", docs_url=None, redoc_url=None)
    jobs: dict[str, TrainerJob] = {}
    sent: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    app.state.jobs = jobs
    app.state.callbacks_sent = sent

    def job_of(job_id: str) -> TrainerJob:
        if job_id not in jobs:
            raise HTTPException(404, f"no job {job_id}")
        return jobs[job_id]

    def succeed(job: TrainerJob) -> None:
        job.status = "succeeded"
        job.fine_tuned_model = f"ft:{job.request.get('base_model', 'base')}:lab:{job.id}"

    @app.post("/jobs")
    async def start(body: dict[str, Any]) -> dict[str, Any]:
        if not str(body.get("dataset_uri", "")).startswith("file://"):
            raise HTTPException(400, "dataset_uri must be a file:// URI this trainer can read")
        job = TrainerJob(id=f"lab-{len(jobs) + 1}", request=body)
        jobs[job.id] = job
        answer: dict[str, Any] = {"id": job.id, "status": job.status}
        if config.mode == "poll":
            answer["status_url"] = f"{config.public_url}/jobs/{job.id}"
        return answer

    @app.get("/jobs/{job_id}")
    async def status(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        job.polls += 1
        if job.status == "running" and job.polls >= config.polls_to_finish:
            succeed(job)
        return {"status": job.status, "fine_tuned_model": job.fine_tuned_model}

    @app.post("/jobs/{job_id}/callback")
    async def watch(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        job = job_of(job_id)
        job.callbacks.append(body)
        task = asyncio.create_task(call_back(job, str(body["url"]), str(body["task_token"])))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return {"watching": job_id}

    async def call_back(job: TrainerJob, url: str, token: str) -> None:
        if config.callback_delay_s is None:
            await job.release.wait()
        else:
            await asyncio.sleep(config.callback_delay_s)
        if job.status == "running":
            succeed(job)
        payload = json.dumps(
            {
                "task_token": token,
                "job_id": job.id,
                "status": job.status,
                "fine_tuned_model": job.fine_tuned_model,
            }
        ).encode()
        headers = {
            "content-type": "application/json",
            **signed_headers(config.secret, payload, int(time.time())),
        }
        async with httpx.AsyncClient() as http:
            response = await http.post(url, content=payload, headers=headers)
        sent.append({"url": url, "body": payload, "status_code": response.status_code})

    @app.post("/_standin/jobs/{job_id}/finish")
    async def finish(job_id: str) -> dict[str, Any]:
        job_of(job_id).release.set()
        return {"released": job_id}

    @app.post("/jobs/{job_id}/cancel")
    async def cancel(job_id: str) -> dict[str, Any]:
        job = job_of(job_id)
        if job.status != "running":
            raise HTTPException(409, f"job {job_id} already {job.status}")
        job.status = "cancelled"
        return {"id": job_id, "status": job.status}

    return app
