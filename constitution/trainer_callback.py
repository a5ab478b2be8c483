"""The call a lab's trainer makes to the gateway when a fine-tune job ends.

It carries the task token of the activity waiting for the job (Temporal's
asynchronous activity completion) and is signed with a secret the trainer and
amend share: HMAC-SHA256 over `v1:<timestamp>:<body>`, the scheme Slack signs
its requests with. A forged, altered or stale callback is refused, so nobody
who merely learns a task token can finish a round's training.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Amend-Signature"
TIMESTAMP_HEADER = "X-Amend-Timestamp"
MAX_AGE_S = 300


class TrainerCallback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_token: str = Field(min_length=2, description="Hex of the waiting activity's token.")
    job_id: str = Field(min_length=1)
    status: str = Field(pattern="^(succeeded|failed|cancelled)$")
    fine_tuned_model: str | None = None
    error: str | None = Field(default=None, max_length=4000)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}


def refusal(secret: str, timestamp: str, body: bytes, signature: str) -> str | None:
    """Why a callback is refused, or None when it is genuine and fresh."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return "the timestamp is missing or not a number"
    if age > MAX_AGE_S:
        return "the request is too old"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return "the signature does not match"
    return None
