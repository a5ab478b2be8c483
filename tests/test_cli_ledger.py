"""`amend constitution ...`, `amend audit verify` and `amend token ...` against
a real PostgreSQL ledger, and the line numbers named for a bad spec file.
The CLI runs in a thread: it runs its own event loop, as from a shell."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from constitution import RoundSpec, render_markdown
from constitution.samples import sample_constitution
from ledger.migrate import migrate_url
from ledger.store import Ledger
from tests.conftest import recorded_round
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
    assert json.loads(stored.output) == {"version": 2, "stored": True, "reverts": None}

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

    # A retired id cannot come back under new words...
    exported.write_text(render_markdown(sample_constitution()).replace(dropped, dropped + " New."))
    revived = await amend("constitution", "import", str(exported))
    assert revived.exit_code == EXIT_USAGE and "cannot be used again" in revived.output
    assert await ledger.get_version(3) is None
    # ...but v1's own document brings it back: a revert to v1.
    exported.write_text(render_markdown(sample_constitution()))
    reverted = await amend("constitution", "import", str(exported))
    assert reverted.exit_code == 0, reverted.output
    assert "has the principles of v1: stored as v3, a revert to v1" in reverted.output
    v3 = await ledger.get_version(3)
    assert v3 is not None and v3.content_hash == sample_constitution().content_hash
    assert retired_id not in v3.retired


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


async def test_importing_an_earlier_versions_text_is_a_revert_recorded_with_who_and_the_file(
    amend: Amend, ledger: Ledger, v1: None, tmp_path: Path
) -> None:
    """Once a crash: UniqueViolationError on constitution_versions_content_hash_key."""
    v1_file = tmp_path / "v1.md"
    assert (await amend("constitution", "export", "1", "-o", str(v1_file))).exit_code == 0
    edited = tmp_path / "v2.md"
    edited.write_text(v1_file.read_text().replace("Avoid serious harm**", "Avoid grave harm**"))
    assert (await amend("constitution", "import", str(edited))).exit_code == 0

    rollback = await amend("constitution", "import", str(v1_file), "--json")
    assert rollback.exit_code == 0, rollback.output
    assert json.loads(rollback.output) == {"version": 3, "stored": True, "reverts": 1}
    row = await ledger.pool.fetchrow(
        "SELECT imported_by, source, reverts FROM constitution_versions WHERE number = 3"
    )
    assert row is not None
    assert dict(row) == {
        "imported_by": "operator:ops-oliver",
        "source": str(v1_file.resolve()),
        "reverts": 1,
    }
    # The same document again is the latest version: nothing stored, and it says which.
    again = await amend("constitution", "import", str(v1_file))
    assert again.exit_code == 0 and "nothing to import: v3 has the same principles" in again.output
    assert (await ledger.get_version(4)) is None


async def test_revert_makes_a_new_version_with_who_and_why_shown_in_the_log_and_lineage(
    amend: Amend, ledger: Ledger, v1: None, tmp_path: Path
) -> None:
    document = tmp_path / "c.md"
    await amend("constitution", "export", "-o", str(document))
    lines = [line for line in document.read_text().splitlines() if not line.startswith("P12.")]
    document.write_text("\n".join(lines) + "\n")
    assert (
        await amend("constitution", "import", str(document), "--reason", "drop P12")
    ).exit_code == 0

    reverted = await amend(
        "constitution", "revert", "1", "--reason", "P12 is needed after all", "--json"
    )
    assert reverted.exit_code == 0, reverted.output
    assert json.loads(reverted.output) == {"version": 3, "stored": True, "reverts": 1}
    v3 = await ledger.get_version(3)
    assert v3 is not None and v3.principles == sample_constitution().principles

    log = json.loads((await amend("constitution", "log", "--json")).output)
    assert [v["made_by"] for v in log] == [
        "import by an unnamed operator",  # stored by the test fixture, not an operator
        f"import by operator:ops-oliver from {document.resolve()}: drop P12",
        "revert to v1 by operator:ops-oliver: P12 is needed after all",
    ]
    shown = await amend("constitution", "log")
    assert "revert to v1 by operator:ops-oliver" in " ".join(shown.output.split())
    lineage = json.loads((await amend("constitution", "lineage", "P12", "--json")).output)
    assert [(e["version"], e["change"]) for e in lineage] == [
        (1, "added"),
        (2, "retired"),
        (3, "restored"),
    ]
    assert lineage[2]["made_by"] == "revert to v1 by operator:ops-oliver: P12 is needed after all"
    assert lineage[1]["imported_by"] == "operator:ops-oliver"

    # The latest already has v1's principles: nothing stored, and it says so.
    same = await amend("constitution", "revert", "1", "--reason", "again")
    assert same.exit_code == 0 and "nothing to revert: the latest version, v3" in same.output
    missing = await amend("constitution", "revert", "9", "--reason", "no such")
    assert missing.exit_code == EXIT_FAILED and "no constitution (version 9)" in missing.output
    empty = await amend("constitution", "revert", "1", "--reason", " ")
    assert empty.exit_code == EXIT_USAGE
    assert (await ledger.get_version(4)) is None


async def test_the_actor_is_the_os_user_where_user_is_unset_and_the_token_holder_when_given(
    database_url: str, ledger: Ledger, v1: None, tmp_path: Path
) -> None:
    """Once `operator:unknown` wherever $USER was unset (cron, containers)."""
    import getpass

    nobody: dict[str, str | None] = {
        "AMEND_DATABASE_URL": database_url,
        "AMEND_DATA_DIR": str(tmp_path / "data"),
        **{name: None for name in ("USER", "LOGNAME", "LNAME", "USERNAME")},
    }
    who = getpass.getuser()  # with no variable set: from the password database
    document = tmp_path / "c.md"
    document.write_text("P1. **Only**: One principle.\n")
    assert (await Amend(nobody)("constitution", "import", str(document))).exit_code == 0
    _, secret = await ledger.create_token("ops-olga", "operator")
    document.write_text("P1. **Only**: One principle, reworded.\n")
    as_olga = Amend({**nobody, "AMEND_API_TOKEN": secret})
    assert (await as_olga("constitution", "import", str(document))).exit_code == 0
    actors = await ledger.pool.fetch(
        "SELECT number, imported_by FROM constitution_versions WHERE number > 1 ORDER BY number"
    )
    assert [(r["number"], r["imported_by"]) for r in actors] == [
        (2, f"operator:{who}"),
        (3, "operator:ops-olga"),
    ]

    _, viewer = await ledger.create_token("grafana", "viewer")
    as_viewer = Amend({**nobody, "AMEND_API_TOKEN": viewer})
    refused = await as_viewer("constitution", "import", str(document))
    assert refused.exit_code == EXIT_USAGE and "changes need an operator token" in refused.output
    as_nobody = Amend({**nobody, "AMEND_API_TOKEN": "amend_nope"})
    unknown = await as_nobody("constitution", "import", str(document))
    assert unknown.exit_code == EXIT_USAGE and "not a live token" in unknown.output
    assert (await ledger.get_version(4)) is None


async def test_round_list_prints_long_round_ids_whole_at_80_columns(
    amend: Amend, ledger: Ledger, v1: None
) -> None:
    long_id = "spring-review-of-the-medical-principles-after-the-red-team-week"
    await ledger.open_round(RoundSpec(round_id=long_id, reviewers=["U1"]), base_version=1)
    amend.env["COLUMNS"] = "80"
    listed = await amend("round", "list")
    assert listed.exit_code == 0, listed.output
    assert long_id in listed.output and "…" not in listed.output


async def test_round_timeline_prints_the_ledger_rows(
    amend: Amend, ledger: Ledger, v1: None
) -> None:
    await recorded_round(
        ledger,
        "timed",
        [
            ("round", None, "created", "operator:ops-oliver", "round started"),
            ("proposal:timed-p1", "drafted", "posted", "workflow", ""),
        ],
    )
    shown = await amend("round", "timeline", "timed")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "created by operator:ops-oliver: round started" in text
    assert "proposal:timed-p1" in text and "drafted → posted by workflow" in text
    rows = json.loads((await amend("round", "timeline", "timed", "--json")).output)
    assert [r["transition_id"] for r in rows] == ["round-timed:1", "round-timed:2"]
    assert rows[1]["hash"] and rows[1]["prev_hash"] == rows[0]["hash"]
    missing = await amend("round", "timeline", "nope")
    assert missing.exit_code == EXIT_FAILED and "no round nope" in missing.output


async def test_evidence_from_an_unknown_round_is_refused_before_the_round_starts(
    amend: Amend, ledger: Ledger, v1: None
) -> None:
    unknown = await amend(
        "round", "start", "--id", "r2", "--reviewer", "U1", "--evidence-from-round", "r1"
    )
    assert unknown.exit_code == EXIT_USAGE, unknown.output
    assert "--evidence-from-round r1: no such round in the ledger" in unknown.output
    await ledger.open_round(RoundSpec(round_id="r1", reviewers=["U1"]), base_version=1)
    known = await amend(
        "round", "start", "--id", "r2", "--reviewer", "U1", "--evidence-from-round", "r1"
    )
    # Accepted: it gets as far as Temporal, which is not running here.
    assert known.exit_code == EXIT_UNREACHABLE and "cannot reach Temporal" in known.output


async def test_unknown_versions_and_principles_are_errors(amend: Amend, v1: None) -> None:
    missing = await amend("constitution", "show", "9")
    assert missing.exit_code == EXIT_FAILED and "no constitution (version 9)" in missing.output
    nobody = await amend("constitution", "lineage", "P404")
    assert nobody.exit_code == EXIT_FAILED and "no version has principle P404" in nobody.output


async def test_audit_verify_passes_an_intact_ledger_and_names_the_first_altered_row(
    amend: Amend, ledger: Ledger, v1: None
) -> None:
    await recorded_round(
        ledger,
        "audited",
        [
            ("round", None, "created", "workflow", ""),
            ("round", "created", "proposing", "workflow", ""),
            ("round", "proposing", "in_review", "workflow", ""),
        ],
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
        assert await seed_sample_constitution(embedded.url(DATABASE_NAME), "operator:ops-oliver")
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


# Each way a ledger row can be tampered with, as SQL against round `tampered`
# (transitions 1 to 4), and the row `amend audit verify` must name.
TAMPERING = {
    "data changed": (
        """UPDATE transitions SET data = '{"kind": "accept"}'
           WHERE transition_id = 'round-tampered:2'""",
        "round-tampered:2",
    ),
    "time changed": (
        """UPDATE transitions SET at = at - interval '1 day'
           WHERE transition_id = 'round-tampered:3'""",
        "round-tampered:3",
    ),
    "order changed": (
        # Rows 2 and 3 swap places, each keeping its own content and hashes.
        """UPDATE transitions SET sequence = -sequence WHERE round_id = 'tampered'
                  AND sequence IN (2, 3);
           UPDATE transitions SET sequence = 5 + sequence WHERE round_id = 'tampered'
                  AND sequence IN (-2, -3)""",
        "round-tampered:3",
    ),
    "row deleted": (
        "DELETE FROM transitions WHERE transition_id = 'round-tampered:2'",
        "round-tampered:3",
    ),
    "last row deleted": (
        "DELETE FROM transitions WHERE transition_id = 'round-tampered:4'",
        "round-tampered:3",
    ),
    "row rehashed after an edit": (
        # A forger who edits a row and recomputes its own hash breaks the next one.
        """UPDATE transitions SET actor = 'mallory',
                  hash = encode(sha256(convert_to('forged', 'UTF8')), 'hex')
           WHERE transition_id = 'round-tampered:2'""",
        "round-tampered:2",
    ),
}


@pytest.mark.parametrize("tampering", list(TAMPERING))
async def test_audit_verify_finds_every_kind_of_tampering_with_a_transition(
    amend: Amend, ledger: Ledger, v1: None, tampering: str
) -> None:
    await recorded_round(
        ledger,
        "tampered",
        [
            ("round", None, "created", "workflow", ""),
            ("round", "created", "proposing", "workflow", ""),
            ("proposal:tampered-p1", None, "posted", "workflow", ""),
            ("round", "proposing", "in_review", "workflow", ""),
        ],
    )
    assert (await amend("audit", "verify")).exit_code == 0
    statement, named = TAMPERING[tampering]
    await ledger.pool.execute(statement)
    report = await amend("audit", "verify", "--round", "tampered", "--json")
    assert report.exit_code == EXIT_FAILED, report.output
    [found] = json.loads(report.output)["breaks"]
    assert found["transition_id"] == named, found
