"""`amend constitution`: read, compare, import and export constitution versions."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from constitution import ConstitutionVersion
from ledger.dashboards import LARGEST_VERSION, Dashboards, LineageEntry, VersionSummary
from ledger.store import Ledger
from worker.cli.render import EXIT_USAGE, console, emit_json, err, fail
from worker.cli.services import on_ledger, operator_name, read_input

app = typer.Typer(
    help="Read, compare, import and export constitution versions.", no_args_is_help=True
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
    as_json: Annotated[bool, typer.Option("--json")] = False,
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
    old: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION)],
    new: Annotated[int, typer.Argument(min=1, max=LARGEST_VERSION)],
) -> None:
    """The change from version OLD to version NEW, as a unified diff."""
    from constitution import diff_versions

    async def main(ledger: Ledger, __: Dashboards) -> str:
        return diff_versions(await _version(ledger, old), await _version(ledger, new))

    typer.echo(on_ledger(main) or f"v{old} and v{new} have the same principles", nl=False)


@app.command("log")
def constitution_log(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every version, oldest first, with the round that made it."""
    from rich.table import Table

    async def main(_: Ledger, dashboards: Dashboards) -> list[VersionSummary]:
        return await dashboards.versions()

    versions = on_ledger(main)
    if as_json:
        emit_json(versions)
        return
    table = Table("version", "principles", "made by", "created", "hash")
    for v in versions:
        table.add_row(
            f"v{v.number}",
            str(v.principles),
            f"round {v.round_id}" if v.round_id else "import",
            f"{v.created_at:%Y-%m-%d %H:%M}",
            v.content_hash[:12],
        )
    console.print(table)


@app.command("lineage")
def constitution_lineage(
    principle: Annotated[str, typer.Argument(help="Principle id, such as P3.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every version of a principle and the round, proposal, evidence and
    reviewers behind each change."""

    async def main(_: Ledger, dashboards: Dashboards) -> list[LineageEntry]:
        return await dashboards.lineage(principle)

    entries = on_ledger(main)
    if not entries:
        raise fail(f"no version has principle {principle}")
    if as_json:
        emit_json(entries)
        return
    for e in entries:
        head = f"[bold]v{e.version}[/bold] {e.change}"
        if e.round_id:
            head += f"  round {escape(e.round_id)}"
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
    actor: Annotated[str | None, typer.Option("--as", help="Operator name recorded.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Store a document as the next constitution version. Principles the
    latest version has and the document lacks are retired."""
    from constitution.documents import DocumentError, imported_version, parse_json, parse_markdown

    text = read_input(path)
    try:
        principles = parse_json(text) if path.suffix == ".json" else parse_markdown(text)
    except DocumentError as error:
        raise fail(f"{path}: {error}", EXIT_USAGE) from error

    async def main(ledger: Ledger, __: Dashboards) -> tuple[ConstitutionVersion, bool]:
        latest = await ledger.get_version()
        try:
            version = imported_version(principles, latest)
        except DocumentError as error:
            raise fail(f"{path}: {error}", EXIT_USAGE) from error
        if latest is not None and latest.content_hash == version.content_hash:
            return latest, False
        await ledger.import_version(version, operator_name(actor))
        return version, True

    version, stored = on_ledger(main)
    if as_json:
        emit_json({"version": version.number, "stored": stored})
    elif stored:
        console.print(f"stored {escape(str(path))} as v{version.number}")
    else:
        console.print(f"nothing to import: v{version.number} has the same principles")


@app.command("export")
def constitution_export(
    version: Annotated[
        int | None, typer.Argument(min=1, max=LARGEST_VERSION, help="Default: the latest.")
    ] = None,
    format: Annotated[DocumentFormat, typer.Option("--format", "-f")] = DocumentFormat.markdown,
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
