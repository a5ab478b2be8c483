"""The trainer's call back: a lab's own trainer finishing a fine-tune job.

The waiting `await_fine_tune` activity handed the trainer its task token; the
trainer sends it back, signed, with the job's outcome, and the gateway
completes the activity (Temporal's asynchronous activity completion). A forged
or stale signature gets 401 and touches nothing; a token whose activity is no
longer waiting (already completed, timed out, or its round cancelled) gets 410.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from constitution.contracts import FineTuneJob
from constitution.trainer_callback import TrainerCallback
from gateway.deps import ConfigDep, LedgerDep, TemporalDep
from gateway.refusals import refusals
from gateway.signing import SignedRequestVerifier, trainer_verifier

log = logging.getLogger(__name__)

router = APIRouter(tags=["trainer"])


def callback_verifier(config: ConfigDep) -> SignedRequestVerifier | None:
    """The verifier of trainer callbacks; None when no trainer secret is set."""
    if config.trainer_secret is None:
        return None
    return trainer_verifier(config.trainer_secret.get_secret_value())


@router.post("/trainer/callback", responses=refusals(413, 503, callers=(400, 401, 410)))
async def trainer_callback(
    request: Request,
    verifier: Annotated[SignedRequestVerifier | None, Depends(callback_verifier)],
    temporal: TemporalDep,
    ledger: LedgerDep,
) -> JSONResponse:
    """A lab trainer's signed report that a fine-tune job ended."""
    if verifier is None:
        return JSONResponse({"error": "no trainer secret is configured"}, status_code=401)
    body = await request.body()
    refused = verifier.refusal(request.headers, body)
    if refused is not None:
        log.warning("trainer callback refused: %s", refused)
        return JSONResponse({"error": f"refused: {refused}"}, status_code=401)
    try:
        callback = TrainerCallback.model_validate_json(body)
        token = bytes.fromhex(callback.task_token)
    except (ValidationError, ValueError) as error:
        return JSONResponse({"error": f"not a trainer callback: {error}"}, status_code=400)
    job = FineTuneJob(
        job_id=callback.job_id,
        status=callback.status,
        fine_tuned_model=callback.fine_tuned_model,
        error=callback.error,
        backend="http",
    )
    try:
        await temporal.get_async_activity_handle(task_token=token).complete(job)
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            return JSONResponse(
                {"error": "stale task token: no activity is waiting for this job"},
                status_code=410,
            )
        raise
    await ledger.update_training_job(
        callback.job_id,
        status=callback.status,
        fine_tuned_model=callback.fine_tuned_model,
        error=callback.error,
    )
    return JSONResponse({"ok": True, "job_id": callback.job_id})
