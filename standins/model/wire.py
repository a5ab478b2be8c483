"""OpenAI's wire conventions that every API area of the model stand-in shares.

The `openai` client reads errors, lists and usage the same way whichever
endpoint answered, so the stand-in writes them in one place: the error JSON
(with the status, `type`, `param` and `code` the client turns into its
exception classes), request bodies that must be JSON objects, cursor pages
(`after`, `has_more`) and token counts for `usage`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from constitution.evidence import count_tokens


class StandInAPIError(Exception):
    """An error the stand-in answers in OpenAI's error JSON shape.

    Raised anywhere below a route, it reaches the client as the status and
    body a real server would send, so the `openai` client raises the same
    exception class (`BadRequestError`, `RateLimitError`, ...) it would in
    production.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> None:
        """Hold the error's parts; `type_` avoids shadowing the builtin.

        Args:
            status: The HTTP status.
            message: What the client shows as the error's message.
            type_: OpenAI's error `type`.
            param: The request field at fault, if one is.
            code: OpenAI's machine-readable `code`, if one applies.
            headers: Extra response headers, such as `retry-after` on a 429.
            body: The whole JSON body, for servers that do not answer in
                OpenAI's error shape (a 422 of request validation).
        """
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = dict(headers or {})
        self.body = dict(body) if body is not None else None

    def response(self) -> JSONResponse:
        """The HTTP answer, for the places that answer without raising (middleware)."""
        return JSONResponse(
            status_code=self.status,
            content=self.body
            or {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            },
            headers=self.headers,
        )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> StandInAPIError:
    """A 400 `invalid_request_error`, the answer to most malformed requests."""
    return StandInAPIError(400, message, param=param, code=code)


def contract_error(message: str) -> StandInAPIError:
    """The prompt does not follow the contract the scripts read.

    A real model would answer something anyway; failing loudly shows prompt
    drift in tests.
    """
    return bad_request(
        f"scripted stand-in: {message}", param="messages", code="standin_prompt_contract"
    )


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body, or the 400 OpenAI answers for anything else.

    Read by hand rather than declared as a body model, so that a malformed
    body gets OpenAI's wording and not FastAPI's validation error.
    """
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from error
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


ObjectT = TypeVar("ObjectT")


def found(objects: Mapping[str, ObjectT], object_id: str, message: str, param: str) -> ObjectT:
    """The object a request path names, or OpenAI's 404 in the area's own wording.

    Args:
        objects: The area's objects by id.
        object_id: The id from the path.
        message: What OpenAI says for an unknown object of this kind.
        param: The parameter OpenAI names in that error.
    """
    if object_id not in objects:
        raise StandInAPIError(404, message, param=param)
    return objects[object_id]


class Listed(Protocol):
    """Anything a list endpoint pages through: the cursor is its id."""

    @property
    def id(self) -> str:
        """The id a client passes back as `after` for the next page."""
        ...


ListedT = TypeVar("ListedT", bound=Listed)


def page(items: list[ListedT], limit: int, after: str | None) -> tuple[list[ListedT], bool]:
    """One page of `items` after the cursor `after`, and whether more follow.

    Args:
        items: Everything listed, in the order the endpoint lists it.
        limit: The page size.
        after: The id of the last item of the previous page; an unknown id
            gives an empty page, as a stale cursor does on OpenAI.

    Returns:
        The page and `has_more`.
    """
    if after is not None:
        ids = [item.id for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return items[:limit], len(items) > limit


def estimate_tokens(text: str) -> int:
    """About four characters a token, as OpenAI's rule of thumb; enough for usage."""
    return max(1, count_tokens(text)) if text else 0
