"""`amend token`: bearer tokens of the HTTP API."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape

from ledger.dashboards import Dashboards
from ledger.reads import ApiToken
from ledger.store import Ledger
from worker.cli.render import JSON_HELP, console, emit_json, fail
from worker.cli.services import on_ledger

app = typer.Typer(help="Bearer tokens of the HTTP API.", no_args_is_help=True)


class TokenRole(StrEnum):
    operator = "operator"
    viewer = "viewer"


@app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="Who or what holds it (recorded as actor).")],
    role: Annotated[TokenRole, typer.Option(help="operator: reads and writes; viewer: reads.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Make a bearer token for the HTTP API. It is shown once; only its hash is kept."""

    async def main(ledger: Ledger, __: Dashboards) -> tuple[ApiToken, str]:
        return await ledger.create_token(name, role.value)

    token, secret = on_ledger(main)
    if as_json:
        emit_json({**token.model_dump(mode="json"), "token": secret})
        return
    console.print(
        f"token {token.token_id} for {escape(name)} ({role.value}); keep it, it is shown once:"
    )
    typer.echo(secret)


@app.command("list")
def token_list(as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False) -> None:
    """List API tokens (never their secrets)."""
    from rich.table import Table

    async def main(ledger: Ledger, __: Dashboards) -> list[ApiToken]:
        return await ledger.list_tokens()

    tokens = on_ledger(main)
    if as_json:
        emit_json(tokens)
        return
    table = Table("id", "name", "role", "created", "revoked")
    for t in tokens:
        table.add_row(
            t.token_id,
            t.name,
            t.role,
            f"{t.created_at:%Y-%m-%d %H:%M}",
            f"{t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "",
        )
    console.print(table)


@app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id, as `token list` shows it.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Revoke a token at once; requests carrying it get 401 from then on."""

    async def main(ledger: Ledger, __: Dashboards) -> bool:
        return await ledger.revoke_token(token_id)

    if not on_ledger(main):
        raise fail(f"no live token {token_id}")
    if as_json:
        emit_json({"token_id": token_id, "revoked": True})
    else:
        console.print(f"revoked {token_id}")
