"""The Batch API of the model stand-in: chat completions answered from a file.

amend sends large, latency-tolerant work (dataset generation) as a batch. The
stand-in answers each line of the input file through the same `complete` as
`/v1/chat/completions`, in the background and within the configured
concurrency, and writes the output and error files a client then downloads,
so the client's whole batch path runs against it.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from fastapi import APIRouter, Request

from standins.model.chat import complete
from standins.model.files import file_for, store_file
from standins.model.state import Batch, ModelServerState, ServerState
from standins.model.wire import StandInAPIError, bad_request, found, page, read_json

router = APIRouter()


def batch_of(state: ModelServerState, batch_id: str) -> Batch:
    """The batch named in a path, or OpenAI's 404."""
    return found(state.batches, batch_id, f"No such Batch object: {batch_id}", "batch_id")


async def run_batch(state: ModelServerState, batch: Batch) -> None:
    """Answer a batch in the background, as OpenAI works through one.

    Reads the input file, answers every request (within the server's
    concurrency limit) and writes the output and error files.

    A line that fails is written to the error file with its `custom_id`; it
    never fails the batch, as on OpenAI.
    """
    batch.status, batch.in_progress_at = "in_progress", int(time.time())
    lines = [
        (n, line)
        for n, line in enumerate(
            state.files[batch.input_file_id].content.decode("utf-8", "replace").splitlines(), 1
        )
        if line.strip()
    ]
    batch.request_counts["total"] = len(lines)

    async def one(number: int, line: str) -> tuple[bool, dict[str, Any]]:
        custom_id: str | None = None
        try:
            item = json.loads(line)
            custom_id = item.get("custom_id")
            if item.get("url") != batch.endpoint or not isinstance(item.get("body"), dict):
                raise bad_request(f"Line {number}: url must be {batch.endpoint} with a body.")
            answer = await complete(state, item["body"], None)
            response = {"status_code": 200, "request_id": answer["id"], "body": answer}
            return True, {"custom_id": custom_id, "response": response, "error": None}
        except (json.JSONDecodeError, AttributeError):
            error = {"code": "invalid_json", "message": f"Line {number} is not JSON."}
        except StandInAPIError as refused:
            error = {"code": refused.code or "invalid_request", "message": refused.message}
        return False, {"custom_id": custom_id, "response": None, "error": error}

    results = await asyncio.gather(*(one(n, line) for n, line in lines))
    batch.finalizing_at = int(time.time())
    done = [r for ok, r in results if ok]
    failed = [r for ok, r in results if not ok]
    for kind, rows in (("output", done), ("error", failed)):
        if not rows:
            continue
        content = "".join(
            json.dumps({"id": state.new_id("batch_req_", 24, r["custom_id"]), **r}) + "\n"
            for r in rows
        ).encode()
        stored = store_file(state, f"{batch.id}_{kind}.jsonl", "batch_output", content)
        setattr(batch, f"{kind}_file_id", stored.id)
    batch.request_counts.update(completed=len(done), failed=len(failed))
    if batch.status == "in_progress":
        batch.status, batch.completed_at = "completed", int(time.time())


@router.post("/v1/batches")
async def create_batch(request: Request, state: ServerState) -> dict[str, Any]:
    """Create a batch and start answering it at once; clients poll for the result."""
    body = await read_json(request)
    input_id = file_for(state, body.get("input_file_id"), "batch", "input_file_id").id
    if body.get("endpoint") != "/v1/chat/completions":
        raise bad_request(
            "The scripted stand-in batches only '/v1/chat/completions'.", param="endpoint"
        )
    if body.get("completion_window") != "24h":
        raise bad_request("completion_window must be '24h'.", param="completion_window")
    metadata = body.get("metadata")
    batch = Batch(
        id=state.new_id("batch_", 24, input_id),
        input_file_id=input_id,
        endpoint=body["endpoint"],
        created_at=int(time.time()),
        metadata=metadata if isinstance(metadata, dict) else None,
    )
    state.batches[batch.id] = batch
    batch.task = asyncio.create_task(run_batch(state, batch))
    return batch.as_json()


@router.get("/v1/batches/{batch_id}")
async def retrieve_batch(batch_id: str, state: ServerState) -> dict[str, Any]:
    """A batch as it stands: what a client polls until it completes."""
    return batch_of(state, batch_id).as_json()


@router.get("/v1/batches")
async def list_batches(
    state: ServerState, limit: int = 20, after: str | None = None
) -> dict[str, Any]:
    """Batches newest first, paged as the API pages them."""
    data, more = page(list(reversed(state.batches.values())), max(1, limit), after)
    return {"object": "list", "data": [b.as_json() for b in data], "has_more": more}


@router.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(batch_id: str, state: ServerState) -> dict[str, Any]:
    """Stop a batch's work; a finished batch cannot be cancelled, as on OpenAI."""
    batch = batch_of(state, batch_id)
    if batch.status in ("completed", "failed", "expired", "cancelled"):
        raise bad_request(f"Batch {batch_id} has already {batch.status}.", param="batch_id")
    if batch.task is not None:
        batch.task.cancel()
    batch.status, batch.cancelled_at = "cancelled", int(time.time())
    return batch.as_json()
