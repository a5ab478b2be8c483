"""The test-control API of the model stand-in, under `/_standin` (no API key).

Tests and benchmarks use it to make the stand-in misbehave on purpose and to
see what it was asked, through the same HTTP a separate process would use.

`POST /_standin/faults` with `{"faults": [...]}` queues misbehaviours consumed
one per chat completion (see `FaultKind`); `"retry_after": <seconds>` sets
what the `rate_limit` fault's Retry-After says (1 until set). With `"task": "<name>"` in the body
(`Grade`, `PreferenceJudgement`, `ProposalBatch` or `text`) the faults wait for
a completion of that task and spoil its answer; only the answer faults
(`ANSWER_FAULTS`) can be aimed so.

`POST /_standin/fine_tuning` with `{"outcomes": [...]}` scripts the next
fine-tuning jobs, one outcome per job created (see
`standins.model.fine_tuning.FineTuneOutcome`).

`POST /_standin/latency` with `{"latency_s": <seconds>}` changes the latency
added to every later chat completion (`latency_s`), so a test that needs a
slow server only until it has caught work mid-way need not wait on it after.

`GET /_standin/stats` and `POST /_standin/reset` inspect and clear the state;
`GET /_standin/requests/sample` answers the kept sample of request bodies
(`request_sample_size`).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal, get_args

from fastapi import APIRouter, Request

from standins.model.behaviour import STRUCTURED_TASKS, TEXT_TASK
from standins.model.fine_tuning import FINE_TUNE_OUTCOMES
from standins.model.state import ServerState
from standins.model.wire import bad_request, read_json

FaultKind = Literal[
    "malformed_json",
    "wrong_shape",
    "refusal",
    "rate_limit",
    "server_error",
    "timeout",
    "drop",
    "length",
    "obey_injection",
]
"""What a queued fault does to the next chat completion.

`malformed_json`, `wrong_shape`, `refusal` and `length` (a truncated answer
with `finish_reason: "length"`) spoil the answer; `obey_injection` answers a
proposal batch that does what hostile evidence says (see
`standins.model.behaviour.script_proposals`); `rate_limit` (429 with
`Retry-After: 1`) and `server_error` (500) refuse the request. `timeout` holds
the answer for `timeout_fault_s` seconds but stops early when the client hangs
up, so a test server can shut down promptly afterwards. `drop` sends the
response status line and headers announcing a body, then returns without
sending it: uvicorn logs "ASGI callable returned without completing
response." and closes the connection, which httpx reports as a protocol error
and the `openai` client as `APIConnectionError`. ASGI offers no way to close a
socket before the status line without reaching into uvicorn's internals,
which this avoids.
"""

FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

ANSWER_FAULTS = frozenset({"malformed_json", "wrong_shape", "refusal", "length", "obey_injection"})
"""The faults that spoil an answer rather than the request, so can wait for a task."""

router = APIRouter()


@router.post("/_standin/faults")
async def enqueue_faults(request: Request, state: ServerState) -> dict[str, Any]:
    """Queue faults for the next completions, or for the next of one task."""
    body = await read_json(request)
    faults = body.get("faults")
    if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
        raise bad_request('Expected {"faults": [<fault>, ...]}.', param="faults")
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        raise bad_request(
            f"Unknown faults {unknown}; known: {', '.join(FAULT_KINDS)}.", param="faults"
        )
    retry_after = body.get("retry_after")
    if retry_after is not None:
        if not isinstance(retry_after, int | float) or retry_after < 0:
            raise bad_request("retry_after is seconds, 0 or more.", param="retry_after")
        state.retry_after_s = float(retry_after)
    task = body.get("task")
    if task is None:
        state.faults.extend(faults)
        return {"pending_faults": list(state.faults)}
    if task not in (*STRUCTURED_TASKS, TEXT_TASK) or not set(faults) <= ANSWER_FAULTS:
        raise bad_request(
            f"A fault aimed at one task must name a known task ({', '.join(STRUCTURED_TASKS)}"
            f", {TEXT_TASK}) and be one of {', '.join(sorted(ANSWER_FAULTS))}.",
            param="task",
        )
    state.task_faults.setdefault(task, deque()).extend(faults)
    return {"pending_faults": list(state.faults), "task": task, "task_faults": faults}


@router.post("/_standin/fine_tuning")
async def script_fine_tuning(request: Request, state: ServerState) -> dict[str, Any]:
    """Script how the next fine-tuning jobs end, one outcome per job created."""
    body = await read_json(request)
    outcomes = body.get("outcomes")
    if not isinstance(outcomes, list) or not all(o in FINE_TUNE_OUTCOMES for o in outcomes):
        raise bad_request(
            f'Expected {{"outcomes": [...]}} of {", ".join(FINE_TUNE_OUTCOMES)}.',
            param="outcomes",
        )
    state.fine_tune_outcomes.extend(outcomes)
    return {"pending_outcomes": list(state.fine_tune_outcomes)}


@router.post("/_standin/latency")
async def set_latency(request: Request, state: ServerState) -> dict[str, Any]:
    """Change the latency of the chat completions that come after this."""
    body = await read_json(request)
    latency_s = body.get("latency_s")
    if isinstance(latency_s, bool) or not isinstance(latency_s, int | float):
        raise bad_request("latency_s must be a number of seconds")
    if not 0 <= latency_s <= 60:
        raise bad_request("latency_s must be between 0 and 60 seconds")
    state.config = state.config.model_copy(update={"latency_s": float(latency_s)})
    return {"latency_s": state.config.latency_s}


@router.get("/_standin/stats")
async def stats(state: ServerState) -> dict[str, Any]:
    """What the stand-in was asked, for assertions on calls the client made."""
    return state.stats()


@router.get("/_standin/requests/sample")
async def request_sample(state: ServerState) -> dict[str, Any]:
    """The kept sample of chat completion request bodies (`request_sample_size`)
    and how many bodies it was drawn from."""
    return {"seen": state.bodies_seen, "bodies": state.sampled_bodies}


@router.post("/_standin/reset")
async def reset(state: ServerState) -> dict[str, Any]:
    """Forget everything but the configuration, so a shared stand-in starts clean."""
    state.reset()
    return {"reset": True}
