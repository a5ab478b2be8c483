"""Signed requests: Slack's interactions and lab trainers' callbacks.

Both are signed the same way (HMAC-SHA256 over `<scheme>:<timestamp>:<raw
body>`, see `constitution.trainer_callback.sign`), so one verifier checks
both, on the raw body, before anything else reads it. Whatever a request
carries (no headers, a timestamp that is not a number, a body that is not
UTF-8) it gets a reason to refuse it, never an exception. The clock is
injected so that tests can judge a request's age without waiting.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from constitution.trainer_callback import SCHEME as TRAINER_SCHEME
from constitution.trainer_callback import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

MAX_AGE_S = 300  # Slack's own limit: a signed request older than five minutes is a replay


@dataclass(frozen=True)
class SignedRequestVerifier:
    """Checks a request's signature and age against one shared secret."""

    secret: str
    scheme: str
    timestamp_header: str
    signature_header: str
    clock: Callable[[], float] = field(default=time.time)
    max_age_s: int = MAX_AGE_S

    def refusal(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """Why the request is refused, or None when it is genuine and fresh."""
        lowered = {name.lower(): value for name, value in headers.items()}
        timestamp = lowered.get(self.timestamp_header.lower(), "")
        signature = lowered.get(self.signature_header.lower(), "")
        # ASCII digits only: str.isdigit() also takes "²" or "٣", which int() refuses
        # or reads as a number Slack never sends (headers arrive as Latin-1 text).
        if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
            return "the timestamp is missing or not a number"
        if abs(self.clock() - int(timestamp)) > self.max_age_s:
            return "the request is too old"
        expected = sign(self.secret, timestamp, body, self.scheme)
        if not hmac.compare_digest(expected.encode(), signature.encode(errors="replace")):
            return "the signature does not match"
        return None


def slack_verifier(
    signing_secret: str, clock: Callable[[], float] = time.time
) -> SignedRequestVerifier:
    """Slack's request signing (`v0`, `X-Slack-Signature`)."""
    return SignedRequestVerifier(
        secret=signing_secret,
        scheme="v0",
        timestamp_header="X-Slack-Request-Timestamp",
        signature_header="X-Slack-Signature",
        clock=clock,
    )


def trainer_verifier(secret: str, clock: Callable[[], float] = time.time) -> SignedRequestVerifier:
    """A lab trainer's callback signing (`v1`, `X-Amend-Signature`)."""
    return SignedRequestVerifier(
        secret=secret,
        scheme=TRAINER_SCHEME,
        timestamp_header=TIMESTAMP_HEADER,
        signature_header=SIGNATURE_HEADER,
        clock=clock,
    )
