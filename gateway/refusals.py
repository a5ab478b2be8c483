"""The error answers of the HTTP API, as the OpenAPI document lists them.

Each route names the refusals it really gives (`refusals(401, 404, ...)`),
each with the body it carries, so a client generated from /openapi.json knows
them, and the schema fuzz (tests/test_api_fuzz.py) checks that no route
answers a status its document leaves out.

Bodies: the API's own refusals are `{"detail": "<why>"}` (HTTPException, the
round's refusals, an unreachable Temporal or ledger database, an oversized
body, a body FastAPI could not decode); a request that
does not fit its schema gets FastAPI's `{"detail": [<issue>, ...]}`. The
Slack and trainer endpoints answer their callers `{"error": "<why>"}`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """A refusal: what was wrong, in words."""

    detail: str = Field(description="Why the request was refused.")


class ValidationIssue(BaseModel):
    """One part of a request that does not fit its schema (FastAPI's shape)."""

    loc: list[str | int] = Field(description="Where: body, query or path, then the field.")
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A request the API cannot take as sent.

    A list of issues when it does not fit the schema, or one sentence when
    it fits but says something impossible (a modify without text).
    """

    detail: list[ValidationIssue] | str


class CallerErrorBody(BaseModel):
    """A refusal answered to Slack or a trainer, which read `error`."""

    error: str


MEANINGS: dict[int, tuple[type[BaseModel], str]] = {
    400: (ErrorBody, "The body could not be read: not UTF-8, or not a payload this takes."),
    401: (ErrorBody, "No token, or an unknown or revoked one (`WWW-Authenticate: Bearer`)."),
    403: (ErrorBody, "A viewer token where an operator token is needed."),
    404: (ErrorBody, "No such round, version or principle."),
    409: (ErrorBody, "The round refused the order, or it is already so: nothing changed."),
    410: (CallerErrorBody, "No activity is waiting for this task token any more."),
    413: (ErrorBody, "The request body is over the limit (AMEND_API_MAX_BODY_BYTES)."),
    422: (ValidationErrorBody, "The request does not fit its schema, or asks for the impossible."),
    503: (
        ErrorBody,
        "Temporal or the ledger database did not answer; nothing was changed, try again "
        "(after `Retry-After` seconds when it says).",
    ),
}


def refusals(*codes: int, callers: tuple[int, ...] = ()) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that can answer these statuses.

    503 is always among them: every route reads the ledger (a token, a row)
    or Temporal, and either may be away for a moment.

    Args:
        codes: The error statuses the route gives.
        callers: Those of them the endpoint answers itself as `{"error": ...}`
            (the Slack and trainer endpoints); the rest keep their usual body.
    """
    return {
        code: {
            "model": CallerErrorBody if code in callers else MEANINGS[code][0],
            "description": MEANINGS[code][1],
        }
        for code in sorted({*codes, *callers, 503})
    }


# Orders to a round need an operator token and a body, reach the round through
# Temporal, and may be refused by it.
ORDER = (400, 401, 403, 404, 409, 413, 422, 503)
