"""The call a lab's trainer makes to the gateway when a fine-tune job ends.

It carries the task token of the activity waiting for the job (Temporal's
asynchronous activity completion) and is signed with a secret the trainer and
amend share: HMAC-SHA256 over `v1:<timestamp>:<body>`, the scheme Slack signs
its requests with (as `v0`). A forged, altered or stale callback is refused by
the gateway (`gateway.signing`), so nobody who merely learns a task token can
finish a round's training. This module holds the wire format only, with no
clock: the sender chooses the timestamp, the receiver judges its age.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Amend-Signature"
TIMESTAMP_HEADER = "X-Amend-Timestamp"
SCHEME = "v1"


class TrainerCallback(BaseModel):
    """The body of a trainer's callback: which job ended, and how."""

    model_config = ConfigDict(extra="forbid")

    task_token: str = Field(min_length=2, description="Hex of the waiting activity's token.")
    job_id: str = Field(min_length=1)
    status: str = Field(pattern="^(succeeded|failed|cancelled)$")
    fine_tuned_model: str | None = None
    error: str | None = Field(default=None, max_length=4000)


def sign(secret: str, timestamp: str, body: bytes, scheme: str = SCHEME) -> str:
    """The signature of `body` sent at `timestamp`, as `<scheme>=<hex HMAC-SHA256>`.

    The HMAC is over `<scheme>:<timestamp>:<body>`. Slack's request signatures
    are this with scheme `v0`, so the gateway checks both with this one function.
    """
    mac = hmac.new(secret.encode(), f"{scheme}:{timestamp}:".encode() + body, hashlib.sha256)
    return f"{scheme}={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The headers a trainer sends with a callback made at `timestamp` (Unix seconds)."""
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, str(timestamp), body),
    }
