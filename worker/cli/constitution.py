"""`amend constitution`: read, compare, import, export and revert constitution versions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from constitution import ConstitutionVersion
from constitution.documents import Provenance
from ledger.dashboards import LARGEST_VERSION, Dashboards, LineageEntry, VersionSummary
from ledger.errors import LedgerError
from ledger.store import Ledger, StoredVersion
from worker.cli.render import AS_HELP, EXIT_USAGE, JSON_HELP, console, emit_json, err, fail
from worker.cli.services import on_ledger, operator_name, read_input

app = typer.Typer(
    help="Read, compare, import, export and revert constitution versions.", no_args_is_help=True
)


class DocumentFormat(StrEnum):
    markdown = "markdown"
    json = "json"


async def _version(ledger: Ledger, number: int | None) -> ConstitutionVersion:
    version = await ledger.get_version(number)
    if version is None:
        which = f"version {number}" if number else "any version"
        raise fail(f"the ledger has no constitution ({which})")
    return version


@app.command("show")
def constitution_show(
    version: Annotated[
        int | None, typer.Argument(min=1, max=LARGEST_VERSION, help="Default: the latest.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Show a constitution version."""
    from constitution import render_markdown

    async def main(ledger: Ledger, __: Dashboards) -> ConstitutionVersion:
        return await _version(ledger, version)

    found = on_ledger(main)
    if as_json:
        emit_json(found)
    else:
        typer.echo(render_markdown(found), nl=False)


@app.command("diff")
def constitution_diff(
    old: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION, help="The version before.")],
    new: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION, help="The version after.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """The change from version OLD to version NEW, as a unified diff."""
    from constitution import diff_versions

    async def main(ledger: Ledger, __: Dashboards) -> str:
        return diff_versions(await _version(ledger, old), await _version(ledger, new))

    diff = on_ledger(main)
    if as_json:
        emit_json({"from": old, "to": new, "same": not diff, "diff": diff})
    else:
        typer.echo(diff or f"v{old} and v{new} have the same principles\n", nl=False)


@app.command("log")
def constitution_log(
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Every version, oldest first, with what made it: a round, or who imported or reverted it,
    from which file and why."""
    from rich import box
    from rich.table import Table

    async def main(_: Ledger, dashboards: Dashboards) -> list[VersionSummary]:
        return await dashboards.versions()

    versions = on_ledger(main)
    if as_json:
        emit_json(versions)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("version", "principles", "created", "hash"):
        table.add_column(name, no_wrap=True)
    table.add_column("made by", ratio=1, overflow="fold")
    for v in versions:
        table.add_row(
            f"v{v.number}",
            str(v.principles),
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.content_hash[:12],
            escape(v.made_by),
        )
    console.print(table)


@app.command("lineage")
def constitution_lineage(
    principle: Annotated[str, typer.Argument(help="Principle id, such as P3.")],
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Every version of a principle and what changed it: the round, proposal, evidence and
    reviewers, or who imported or reverted the version."""

    async def main(_: Ledger, dashboards: Dashboards) -> list[LineageEntry]:
        return await dashboards.lineage(principle)

    entries = on_ledger(main)
    if not entries:
        raise fail(f"no version has principle {principle}")
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        head = f"[bold]v{e.version}[/bold] {e.change}  {escape(e.made_by)}"
        if e.proposal_id:
            head += f"  proposal {escape(e.proposal_id)} ({e.proposal_kind})"
        console.print(head)
        if e.change != "unchanged" and e.text:
            console.print(f"    {escape(e.text)}")
        if e.reviewers:
            console.print(f"    reviewers: {escape(', '.join(e.reviewers))}")
        if e.evidence:
            console.print(f"    evidence: {escape(', '.join(e.evidence))}")


@app.command("import")
def constitution_import(
    path: Annotated[Path, typer.Argument(help="Markdown (.md) or JSON file.")],
    reason: Annotated[str | None, typer.Option(help="Why; recorded with the version.")] = None,
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Store a document as the next constitution version, recording who imported it and from
    which file. Principles the latest version has and the document lacks are retired.

    A document with the principles of an earlier version makes a revert to that version; one
    with the latest version's principles stores nothing."""
    from constitution.documents import DocumentError, parse_json, parse_markdown

    text = read_input(path)
    try:
        principles = parse_json(text) if path.suffix == ".json" else parse_markdown(text)
    except DocumentError as error:
        raise fail(f"{path}: {error}", EXIT_USAGE) from error
    provenance = _provenance(actor, source=str(path.resolve()), reason=reason)

    async def main(ledger: Ledger, __: Dashboards) -> StoredVersion:
        try:
            return await ledger.import_document(principles, provenance)
        except DocumentError as error:
            raise fail(f"{path}: {error}", EXIT_USAGE) from error
        except LedgerError as error:
            raise fail(f"{error}; nothing was stored, try again") from error

    stored = on_ledger(main)
    if as_json:
        emit_json(stored)
    elif not stored.stored:
        console.print(f"nothing to import: v{stored.version} has the same principles")
    elif stored.reverts is not None:
        console.print(
            f"{escape(str(path))} has the principles of v{stored.reverts}: stored as "
            f"v{stored.version}, a revert to v{stored.reverts}"
        )
    else:
        console.print(f"stored {escape(str(path))} as v{stored.version}")


@app.command("revert")
def constitution_revert(
    version: Annotated[
        int, typer.Argument(min=1, max=LARGEST_VERSION, help="The version to restore.")
    ],
    reason: Annotated[str, typer.Option(help="Why; recorded with the new version.")],
    actor: Annotated[str | None, typer.Option("--as", help=AS_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Roll back: make a new version whose principles are VERSION's, recorded with who and why.

    Nothing is rewritten: the versions after VERSION stay in the log, and principles they added
    are retired by the new one. When the latest version already has VERSION's principles,
    nothing is stored."""
    provenance = _provenance(actor, source=None, reason=reason)

    async def main(ledger: Ledger, __: Dashboards) -> StoredVersion:
        try:
            stored = await ledger.revert_to(version, provenance)
        except LedgerError as error:
            raise fail(f"{error}; nothing was stored, try again") from error
        if stored is None:
            raise fail(f"the ledger has no constitution (version {version})")
        return stored

    stored = on_ledger(main)
    if as_json:
        emit_json(stored)
    elif stored.stored:
        console.print(f"stored v{stored.version}, a revert to v{version}")
    else:
        console.print(
            f"nothing to revert: the latest version, v{stored.version}, has the principles "
            f"of v{version}"
        )


def _provenance(actor: str | None, *, source: str | None, reason: str | None) -> Provenance:
    if reason is not None and not reason.strip():
        raise fail("--reason is empty: say why", EXIT_USAGE)
    try:
        return Provenance(actor=operator_name(actor), source=source, reason=reason)
    except ValidationError as error:
        problem = error.errors()[0]
        raise fail(f"{problem['loc'][0]}: {problem['msg']}", EXIT_USAGE) from error


@app.command("export")
def constitution_export(
    version: Annotated[
        int | None, typer.Argument(min=1, max=LARGEST_VERSION, help="Default: the latest.")
    ] = None,
    format: Annotated[
        DocumentFormat, typer.Option("--format", "-f", help="markdown or json.")
    ] = DocumentFormat.markdown,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """Write a version as Markdown or JSON (both can be imported again)."""
    from constitution import render_markdown

    async def main(ledger: Ledger, __: Dashboards) -> ConstitutionVersion:
        return await _version(ledger, version)

    found = on_ledger(main)
    if format is DocumentFormat.json:
        text = found.model_dump_json(indent=2) + "\n"
    else:
        text = render_markdown(found)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        err.print(f"wrote v{found.number} to {escape(str(output))}")
