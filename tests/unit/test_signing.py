"""Signed requests (Slack's interactions, trainers' callbacks): whatever a
request carries, the verifier answers with a reason to refuse it or None,
never an exception; its clock decides what is stale."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from slack_sdk.signature import SignatureVerifier

from constitution.trainer_callback import signed_headers
from gateway.signing import MAX_AGE_S, slack_verifier, trainer_verifier

SECRET = "a-shared-secret"
NOW = 1_800_000_000
BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"


def slack_headers(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    """Headers as Slack sends them, signed by slack_sdk (an implementation not ours)."""
    signature = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    assert signature is not None
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}


def test_a_request_signed_as_slack_signs_it_is_accepted() -> None:
    verifier = slack_verifier(SECRET, clock=lambda: NOW)
    assert verifier.refusal(slack_headers(BODY, NOW), BODY) is None


def test_header_names_are_matched_whatever_their_case() -> None:
    verifier = slack_verifier(SECRET, clock=lambda: NOW)
    lowered = {k.lower(): v for k, v in slack_headers(BODY, NOW).items()}
    assert verifier.refusal(lowered, BODY) is None


def test_a_request_older_than_five_minutes_is_refused_as_too_old() -> None:
    verifier = slack_verifier(SECRET, clock=lambda: NOW + MAX_AGE_S + 1)
    assert verifier.refusal(slack_headers(BODY, NOW), BODY) == "the request is too old"


def test_an_altered_body_or_another_secret_is_refused() -> None:
    verifier = slack_verifier(SECRET, clock=lambda: NOW)
    assert verifier.refusal(slack_headers(BODY, NOW), BODY + b"x") == (
        "the signature does not match"
    )
    assert verifier.refusal(slack_headers(BODY, NOW, "another"), BODY) == (
        "the signature does not match"
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0=é\udcff"},
        {"X-Slack-Request-Timestamp": str(NOW)},
    ],
)
def test_malformed_headers_get_a_reason_never_an_exception(headers: dict[str, str]) -> None:
    verifier = slack_verifier(SECRET, clock=lambda: NOW)
    assert verifier.refusal(headers, BODY) is not None


def test_a_body_that_is_not_utf8_is_judged_by_its_signature_alone() -> None:
    body = b"\xff\xfe not text"  # slack_sdk cannot sign this: Slack's scheme, by hand
    mac = hmac.new(SECRET.encode(), f"v0:{NOW}:".encode() + body, hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": f"v0={mac}"}
    verifier = slack_verifier(SECRET, clock=lambda: NOW)
    assert verifier.refusal(headers, body) is None
    assert verifier.refusal(slack_headers(BODY, NOW), body) == "the signature does not match"


def test_a_trainer_callback_is_checked_by_the_same_verifier_under_its_own_scheme() -> None:
    body = b'{"job_id": "j1"}'
    verifier = trainer_verifier(SECRET, clock=lambda: NOW)
    assert verifier.refusal(signed_headers(SECRET, body, NOW), body) is None
    # A Slack signature of the same body is not a trainer's (v0 is not v1).
    slack = slack_headers(body, NOW)
    as_trainer = {
        "X-Amend-Timestamp": slack["X-Slack-Request-Timestamp"],
        "X-Amend-Signature": slack["X-Slack-Signature"],
    }
    assert verifier.refusal(as_trainer, body) == "the signature does not match"
