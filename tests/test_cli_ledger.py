"""`amend constitution ...`, `amend audit verify` and `amend token ...` against
a real PostgreSQL ledger, and the line numbers named for a bad spec file.
The CLI runs in a thread: it runs its own event loop, as from a shell."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from constitution import RoundSpec, TransitionRecord, render_markdown
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.store import Ledger
from worker.cli import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, app
from worker.database import DATABASE_NAME, ensure_database, start_embedded
from worker.devstack import seed_sample_constitution


class Amend:
    def __init__(self, env: dict[str, str | None]) -> None:
        self.env = env

    async def __call__(self, *args: str) -> Result:
        return await asyncio.to_thread(
            CliRunner().invoke, app, list(args), env=self.env, prog_name="amend"
        )


@pytest.fixture
def amend(database_url: str, tmp_path: Path) -> Amend:
    return Amend(
        {
            "AMEND_DATABASE_URL": database_url,
            "AMEND_DATA_DIR": str(tmp_path / "data"),
            "AMEND_TEMPORAL_ADDRESS": "127.0.0.1:1",
            "USER": "ops-oliver",
            "COLUMNS": "200",
        }
    )


@pytest.fixture
async def v1(ledger: Ledger) -> None:
    await ledger.save_version(sample_constitution())


async def test_export_then_import_round_trips_and_an_edit_makes_the_next_version(
    amend: Amend, ledger: Ledger, v1: None, tmp_path: Path
) -> None:
    exported = tmp_path / "c.md"
    result = await amend("constitution", "export", "-o", str(exported))
    assert result.exit_code == 0, result.output
    assert exported.read_text() == render_markdown(sample_constitution())
    same = await amend("constitution", "import", str(exported))
    assert same.exit_code == 0 and "nothing to import" in same.output
    assert len(await ledger.pool.fetch("SELECT 1 FROM constitution_versions")) == 1

    lines = exported.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("P1."))
    lines[first] = lines[first].split(":", 1)[0] + ": Reworded by an operator."
    dropped = lines.pop(first + 1)  # the next principle is retired
    exported.write_text("\n".join(lines) + "\n")
    stored = await amend("constitution", "import", str(exported), "--json")
    assert stored.exit_code == 0, stored.output
    assert json.loads(stored.output) == {"version": 2, "stored": True}

    v2 = await ledger.get_version(2)
    assert v2 is not None and v2.parent_hash == sample_constitution().content_hash
    retired_id = dropped.split(".", 1)[0]
    assert retired_id in v2.retired
    assert (
        await ledger.pool.fetchval("SELECT imported_by FROM constitution_versions WHERE number = 2")
        == "operator:ops-oliver"
    )

    diff = await amend("constitution", "diff", "1", "2")
    assert "+P1." in diff.output and "Reworded by an operator." in diff.output
    lineage = json.loads((await amend("constitution", "lineage", "P1", "--json")).output)
    assert [(e["version"], e["change"]) for e in lineage] == [(1, "added"), (2, "revised")]
    gone = json.loads((await amend("constitution", "lineage", retired_id, "--json")).output)
    assert gone[-1]["change"] == "retired" and gone[-1]["version"] == 2
    log = json.loads((await amend("constitution", "log", "--json")).output)
    assert [v["number"] for v in log] == [1, 2]
    shown = json.loads((await amend("constitution", "show", "2", "--json")).output)
    assert shown["principles"][0]["text"] == "Reworded by an operator."

    # An exported JSON imports back as the same version: nothing new.
    as_json = tmp_path / "c.json"
    await amend("constitution", "export", "2", "--format", "json", "-o", str(as_json))
    again = await amend("constitution", "import", str(as_json))
    assert again.exit_code == 0 and "nothing to import: v2" in again.output

    # A retired id cannot come back.
    exported.write_text(render_markdown(sample_constitution()))
    revived = await amend("constitution", "import", str(exported))
    assert revived.exit_code == EXIT_USAGE and "cannot be used again" in revived.output
    assert await ledger.get_version(3) is None


@pytest.mark.parametrize(
    ("name", "text", "complaint"),
    [
        ("c.md", "# C\n\nP1. **Title**: fine\nP2 Title without markup\n", "line 4"),
        ("c.md", "P1. **T**: a\nP1. **U**: b\n", "duplicate principle ids: P1"),
        ("c.md", "P01234. **T**: a\n", "line 1"),
        ("c.json", '{"principles": [{"id": "P1", "title": ""}]}', "principles[0].title"),
        ("c.json", '{"principles": [\n', "line 2"),
    ],
    ids=["bad-line", "duplicate", "bad-id", "json-field", "json-syntax"],
)
async def test_a_bad_document_exits_2_naming_where_and_stores_nothing(
    amend: Amend, ledger: Ledger, v1: None, tmp_path: Path, name: str, text: str, complaint: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = await amend("constitution", "import", str(path))
    assert result.exit_code == EXIT_USAGE, result.output
    assert complaint in result.output
    assert await ledger.get_version(2) is None


async def test_unknown_versions_and_principles_are_errors(amend: Amend, v1: None) -> None:
    missing = await amend("constitution", "show", "9")
    assert missing.exit_code == EXIT_FAILED and "no constitution (version 9)" in missing.output
    nobody = await amend("constitution", "lineage", "P404")
    assert nobody.exit_code == EXIT_FAILED and "no version has principle P404" in nobody.output


async def test_audit_verify_passes_an_intact_ledger_and_names_the_first_altered_row(
    amend: Amend, ledger: Ledger, v1: None
) -> None:
    await ledger.open_round(RoundSpec(round_id="audited", reviewers=["U1"]), base_version=1)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await ledger.record_transitions(
        [
            TransitionRecord(
                workflow_id="round-audited",
                sequence=n,
                round_id="audited",
                entity="round",
                from_state=frm,
                to_state=to,
                actor="workflow",
                at=t0 + timedelta(seconds=n),
            )
            for n, frm, to in [
                (1, None, "created"),
                (2, "created", "proposing"),
                (3, "proposing", "in_review"),
            ]
        ]
    )
    ok = await amend("audit", "verify")
    assert ok.exit_code == 0 and "1 round chain intact" in ok.output
    await ledger.pool.execute(
        "UPDATE transitions SET reason = 'edited' WHERE transition_id = 'round-audited:2'"
    )
    broken = await amend("audit", "verify")
    assert broken.exit_code == EXIT_FAILED
    assert "round-audited:2" in broken.output and "does not match its hash" in broken.output
    report = json.loads((await amend("audit", "verify", "--round", "audited", "--json")).output)
    assert report["breaks"][0]["transition_id"] == "round-audited:2"
    unknown = await amend("audit", "verify", "--round", "nope")
    assert unknown.exit_code == EXIT_FAILED and "no round nope" in unknown.output


async def test_tokens_are_shown_once_stored_hashed_listed_and_revoked(
    amend: Amend, ledger: Ledger
) -> None:
    made = json.loads(
        (await amend("token", "create", "grafana", "--role", "viewer", "--json")).output
    )
    secret = made["token"]
    stored = await ledger.pool.fetch("SELECT * FROM api_tokens")
    assert len(stored) == 1 and secret not in json.dumps([dict(r) for r in stored], default=str)
    holder = await ledger.token_holder(secret)
    assert holder is not None and holder.role == "viewer"
    listed = await amend("token", "list")
    assert "grafana" in listed.output and secret not in listed.output
    assert (await amend("token", "revoke", made["token_id"])).exit_code == 0
    assert await ledger.token_holder(secret) is None
    again = await amend("token", "revoke", made["token_id"])
    assert again.exit_code == EXIT_FAILED
    bad_role = await amend("token", "create", "x", "--role", "admin")
    assert bad_role.exit_code == EXIT_USAGE


async def test_ledger_commands_without_a_database_exit_3_saying_what_to_set(
    tmp_path: Path,
) -> None:
    amend = Amend({"AMEND_DATABASE_URL": None, "AMEND_DATA_DIR": str(tmp_path / "none")})
    result = await amend("round", "list")
    assert result.exit_code == EXIT_UNREACHABLE
    assert "AMEND_DATABASE_URL" in result.output and "amend dev" in result.output


async def test_a_bad_spec_field_is_named_with_its_line(amend: Amend, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("round_id: r1\nreviewers: [U1]\ntraining:\n  method: rlhf\n")
    result = await amend("round", "start", "--spec", str(spec))
    assert result.exit_code == EXIT_USAGE
    assert f"{spec} line 4: training.method" in " ".join(result.output.split())


async def test_ledger_commands_use_the_embedded_database_a_running_dev_stack_holds(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "dev"
    embedded = await asyncio.to_thread(start_embedded, data_dir)
    try:
        await ensure_database(embedded.url("postgres"), DATABASE_NAME)
        await migrate_url(embedded.url(DATABASE_NAME))
        assert await seed_sample_constitution(embedded.url(DATABASE_NAME))
        amend = Amend({"AMEND_DATABASE_URL": None, "AMEND_DATA_DIR": str(data_dir)})
        shown = await amend("constitution", "show", "--json")
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.output)["number"] == 1
    finally:
        await asyncio.to_thread(embedded.stop)
    # Reading never starts it: once `amend dev` has stopped, the CLI says so.
    after = await amend("constitution", "show")
    assert after.exit_code == EXIT_UNREACHABLE and "amend dev" in after.output


async def test_migrate_on_the_embedded_database_reports_what_it_applied(tmp_path: Path) -> None:
    amend = Amend({"AMEND_DATABASE_URL": None, "AMEND_DATA_DIR": str(tmp_path / "dev")})
    first = await amend("migrate", "--seed")
    assert first.exit_code == 0, first.output
    assert "applied: 0001_ledger" in first.output
    assert "seeded the sample constitution as v1" in first.output
    again = await amend("migrate", "--seed")
    assert again.exit_code == 0, again.output
    assert "applied: nothing (up to date)" in again.output
    assert "seeded" not in again.output
