"""Bearer tokens with roles for the operator and dashboard API.

A viewer reads; an operator reads and writes. Tokens are looked up by their
SHA-256 (the ledger never holds a secret). The built-in pages take the same
token from a cookie, set by the sign-in form, so a browser needs no header.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from constitution.models import PRINCIPLE_ID, ROUND_ID
from gateway.deps import services

COOKIE = "amend_token"

bearer = HTTPBearer(auto_error=False, description="A token from `amend token create`.")


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"


class Caller(BaseModel):
    """Who sent a request; writes record `actor` on what they change."""

    name: str
    role: Role
    token_id: str

    @property
    def actor(self) -> str:
        return f"operator:{self.name}"


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


async def identify(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    if not token:
        raise _unauthorized("a bearer token is required (see `amend token create`)")
    holder = await services(request).ledger.token_holder(token)
    if holder is None:
        raise _unauthorized("unknown or revoked token")
    return Caller(name=holder.name, role=Role(holder.role), token_id=holder.token_id)


def requires(role: Role) -> Callable[..., Awaitable[Caller]]:
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        caller = await identify(request, credentials)
        if role is Role.operator and caller.role is not Role.operator:
            raise HTTPException(
                403, f"{caller.name} has a {caller.role} token; this needs operator"
            )
        return caller

    return dependency


Viewer = Annotated[Caller, Depends(requires(Role.viewer))]
Operator = Annotated[Caller, Depends(requires(Role.operator))]

# Ids in paths are checked against their shapes, so a malformed one is a 422
# that names it, never a lookup (or a Temporal call) with garbage.
RoundId = Annotated[str, Path(pattern=ROUND_ID.pattern, description="A round id.")]
PrincipleId = Annotated[str, Path(pattern=PRINCIPLE_ID.pattern, description="Such as P3.")]
