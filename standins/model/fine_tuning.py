"""The fine-tuning API of the model stand-in: jobs whose outcome a test scripts.

A job advances each time it is retrieved, never with the clock: it validates
its training file on the first step (so dataset bugs fail the job, as they
would on OpenAI), then runs for `fine_tune_polls_to_finish` polls and settles
on its scripted outcome (see `FineTuneOutcome`). A succeeded job names a new
`ft:` model, which the chat scripts then play as the trained candidate.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, get_args

from fastapi import APIRouter, Request

from standins.model.files import file_for, store_file
from standins.model.state import (
    FineTuningJob,
    JobEvent,
    ModelServerState,
    ServerState,
    digest,
)
from standins.model.wire import bad_request, estimate_tokens, found, page, read_json

FineTuneOutcome = Literal["succeed", "fail", "never", "overcautious"]
"""How a scripted job ends: `succeed`; `fail` after validation; `never` (it runs
until cancelled); `overcautious` (it succeeds, but the model refuses everything,
so over-refusal rises and the gate holds it back)."""

FINE_TUNE_OUTCOMES: tuple[str, ...] = get_args(FineTuneOutcome)

FINISHED = frozenset({"succeeded", "failed", "cancelled"})
"""Statuses a job never leaves."""

router = APIRouter()


def validate_training_data(content: bytes, method: str) -> str | None:
    """Why the training file would fail OpenAI's validation, or None.

    Checks the shape of each line for the method, so dataset bugs show up in
    tests rather than at a real provider.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return "The training file is not UTF-8 text."
    examples = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return f"Line {number} is not valid JSON."
        if not isinstance(row, dict):
            return f"Line {number} is not a JSON object."
        if method == "dpo":
            prompt = row.get("input")
            if not isinstance(prompt, dict) or not isinstance(prompt.get("messages"), list):
                return f"Line {number}: a DPO example needs input.messages."
            for key in ("preferred_output", "non_preferred_output"):
                value = row.get(key)
                if not isinstance(value, list) or not value:
                    return f"Line {number}: a DPO example needs a non-empty {key}."
        else:
            messages = row.get("messages")
            if not isinstance(messages, list) or not messages:
                return f"Line {number}: a supervised example needs a non-empty messages list."
            roles = [m.get("role") for m in messages if isinstance(m, dict)]
            if len(roles) != len(messages) or "assistant" not in roles:
                return f"Line {number}: messages need roles and at least one assistant message."
        examples += 1
    if examples == 0:
        return "The training file has no examples."
    return None


def resolve_hyperparameters(raw: Any, method: str) -> dict[str, Any]:
    """Hyperparameters with 'auto' resolved to the values the stand-in 'uses'."""
    given = raw if isinstance(raw, dict) else {}
    resolved: dict[str, Any] = {"batch_size": 1, "learning_rate_multiplier": 1.0, "n_epochs": 3}
    if method == "dpo":
        resolved["beta"] = 0.1
    for key, default in list(resolved.items()):
        value = given.get(key, "auto")
        if value == "auto" or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise bad_request(
                f"Invalid hyperparameter {key}: {value!r}.", param=f"hyperparameters.{key}"
            )
        resolved[key] = type(default)(value)
    return resolved


def job_of(state: ModelServerState, job_id: str) -> FineTuningJob:
    """The job named in a path, or OpenAI's 404 for an unknown fine-tune."""
    return found(state.jobs, job_id, f"Could not find fine-tune: {job_id}", "fine_tune_id")


def add_event(
    state: ModelServerState,
    job: FineTuningJob,
    message: str,
    level: Literal["info", "warn", "error"] = "info",
    kind: Literal["message", "metrics"] = "message",
    data: dict[str, Any] | None = None,
) -> None:
    """Log an event on the job, as OpenAI logs each step a client may show."""
    job.events.append(
        JobEvent(
            id=state.new_id("ftevent-", 24, job.id, message),
            created_at=int(time.time()),
            level=level,
            message=message,
            type=kind,
            data=data or {},
        )
    )


def finish(job: FineTuningJob, status: str) -> None:
    """Settle a job in a final status, stamped with when it got there."""
    job.status = status
    job.finished_at = int(time.time())


def advance(state: ModelServerState, job: FineTuningJob) -> None:
    """Move a job one poll along, so a test sets how long training "takes".

    Validates on the first step, then settles on the job's scripted outcome
    once it has been retrieved `fine_tune_polls_to_finish` times.
    """
    if job.status in FINISHED:
        return
    training = state.files[job.training_file]
    if not job.validated:
        job.validated = True
        problem = validate_training_data(training.content, job.method["type"])
        if problem is not None:
            job.error = {
                "code": "invalid_training_file",
                "message": problem,
                "param": "training_file",
            }
            add_event(
                state, job, f"Training file {training.id} is invalid: {problem}", level="error"
            )
            finish(job, "failed")
            return
        add_event(state, job, "Files validated, moving job to queued state")
        add_event(state, job, f"Fine-tuning job started ({job.method['type']})")
    if job.retrieves < state.config.fine_tune_polls_to_finish or job.outcome == "never":
        job.status = "running"
        return
    if job.outcome == "fail":
        job.error = {
            "code": "training_failed",
            "message": "scripted stand-in: the training run diverged (loss became NaN)",
            "param": None,
        }
        add_event(state, job, f"Job failed: {job.error['message']}", level="error")
        finish(job, "failed")
        return
    epochs = int(job.hyperparameters["n_epochs"])
    tokens = estimate_tokens(training.content.decode("utf-8", "replace")) * epochs
    loss = round(1.0 / (1 + epochs), 4)
    add_event(
        state,
        job,
        f"Step {epochs}/{epochs}: training loss={loss}",
        kind="metrics",
        data={"step": epochs, "train_loss": loss, "total_steps": epochs},
    )
    base = job.model.split(":")[1] if job.model.startswith("ft:") else job.model
    short = job.id.removeprefix("ftjob-")[:8]
    job.fine_tuned_model = f"ft:{base}:amend:{job.suffix or 'round'}:{short}"
    job.trained_tokens = tokens
    results = store_file(
        state,
        "step_metrics.csv",
        "fine-tune-results",
        f"step,train_loss\n{epochs},{loss}\n".encode(),
    )
    job.result_files = [results.id]
    state.fine_tuned_models.append(job.fine_tuned_model)
    if job.outcome == "overcautious":
        state.overcautious_models.add(job.fine_tuned_model)
    add_event(state, job, f"New fine-tuned model created: {job.fine_tuned_model}")
    add_event(state, job, "The job has successfully completed")
    finish(job, "succeeded")


@router.post("/v1/fine_tuning/jobs")
async def create_job(request: Request, state: ServerState) -> dict[str, Any]:
    """Create a job; its outcome is the next one scripted, `succeed` when none is."""
    body = await read_json(request)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("Missing required parameter: 'model'.", param="model")
    training_id = file_for(state, body.get("training_file"), "fine-tune", "training_file").id
    validation_id = body.get("validation_file")
    if validation_id is not None and validation_id not in state.files:
        raise bad_request(f"invalid validation_file: {validation_id}", param="validation_file")
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 64):
        raise bad_request("suffix must be 1-64 characters.", param="suffix")
    raw_method = body.get("method")
    method_type = "supervised"
    method_hyper: Any = None
    if raw_method is not None:
        if not isinstance(raw_method, dict) or raw_method.get("type") not in (
            "supervised",
            "dpo",
        ):
            raise bad_request(
                "The scripted stand-in supports method.type 'supervised' or 'dpo'.",
                param="method.type",
            )
        method_type = raw_method["type"]
        section = raw_method.get(method_type)
        if isinstance(section, dict):
            method_hyper = section.get("hyperparameters")
    merged = {**(body.get("hyperparameters") or {}), **(method_hyper or {})}
    hyper = resolve_hyperparameters(merged, method_type)
    seed = body.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        seed = int(digest(model, training_id, suffix)[:8], 16) % 2_147_483_647
    metadata = body.get("metadata")
    job = FineTuningJob(
        id=state.new_id("ftjob-", 24, model, training_id, suffix),
        model=model,
        training_file=training_id,
        validation_file=validation_id,
        suffix=suffix,
        seed=seed,
        method={"type": method_type, method_type: {"hyperparameters": hyper}},
        hyperparameters={
            k: hyper[k] for k in ("batch_size", "learning_rate_multiplier", "n_epochs")
        },
        metadata=metadata if isinstance(metadata, dict) else None,
        created_at=int(time.time()),
        outcome=state.fine_tune_outcomes.popleft() if state.fine_tune_outcomes else "succeed",
    )
    state.jobs[job.id] = job
    add_event(state, job, f"Created fine-tuning job: {job.id}")
    add_event(state, job, f"Validating training file: {training_id}")
    if state.config.fine_tune_polls_to_finish == 0:
        advance(state, job)
    return job.as_json(state.config.organization_id)


@router.get("/v1/fine_tuning/jobs")
async def list_jobs(
    request: Request, state: ServerState, limit: int = 20, after: str | None = None
) -> dict[str, Any]:
    """Jobs newest first, filtered by `metadata[key]=value` as the API's list is."""
    wanted = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }
    newest_first = [
        job
        for job in reversed(state.jobs.values())
        if all((job.metadata or {}).get(k) == v for k, v in wanted.items())
    ]
    data, more = page(newest_first, max(1, limit), after)
    return {
        "object": "list",
        "data": [j.as_json(state.config.organization_id) for j in data],
        "has_more": more,
    }


@router.get("/v1/fine_tuning/jobs/{job_id}")
async def retrieve_job(job_id: str, state: ServerState) -> dict[str, Any]:
    """A job, advanced one poll: polling is what moves a stand-in job along."""
    job = job_of(state, job_id)
    if job.status not in FINISHED:
        job.retrieves += 1
        advance(state, job)
    return job.as_json(state.config.organization_id)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, state: ServerState) -> dict[str, Any]:
    """Cancel a running job; a finished one cannot be, as on OpenAI."""
    job = job_of(state, job_id)
    if job.status in FINISHED:
        raise bad_request(
            f"Job {job_id} has already {job.status} and cannot be cancelled.",
            param="fine_tune_id",
            code="job_not_cancellable",
        )
    add_event(state, job, "Fine-tuning job cancelled")
    finish(job, "cancelled")
    return job.as_json(state.config.organization_id)


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
async def list_events(
    job_id: str, state: ServerState, limit: int = 20, after: str | None = None
) -> dict[str, Any]:
    """A job's events newest first, paged as the API pages them."""
    newest_first = list(reversed(job_of(state, job_id).events))
    data, more = page(newest_first, max(1, limit), after)
    return {"object": "list", "data": [e.as_json() for e in data], "has_more": more}
