"""The `amend` command line: help, exit codes and messages for bad input and for
services that cannot be reached. No services run for these tests; Temporal is
pointed at a closed port (127.0.0.1:1) where it must be unreachable.

Exit codes (worker/cli/render.py): 2 bad arguments or input, 3 a service unreachable.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from worker.cli import EXIT_UNREACHABLE, EXIT_USAGE, app

UNREACHABLE_TEMPORAL = "127.0.0.1:1"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Invoke(Protocol):
    def __call__(self, args: list[str], env: Mapping[str, str | None] | None = None) -> Result: ...


GOOD_SPEC = "round_id: spring-1\nreviewers: [U0REVIEWER]\nmax_proposals: 3\n"


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run `amend ...` in-process, from an empty directory (so no `.env` is read)
    with its data under tmp_path and no database or Temporal from the caller's
    environment."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    # The process commands configure the root logger as a process would, with a
    # handler on the runner's stream, which is closed once the command returns.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)

    def run(args: list[str], env: Mapping[str, str | None] | None = None) -> Result:
        full_env: dict[str, str | None] = {
            "AMEND_DATA_DIR": str(tmp_path / "data"),
            "AMEND_DATABASE_URL": None,
            "AMEND_TEMPORAL_ADDRESS": UNREACHABLE_TEMPORAL,
            **(env or {}),
        }
        return runner.invoke(app, args, env=full_env, prog_name="amend")

    return run


def squash(text: str) -> str:
    """Output without colour codes or whitespace, so a message wrapped by the
    terminal width still matches."""
    return "".join(ANSI.sub("", text).split())


def says(result: Result, *fragments: str) -> bool:
    output = squash(result.output)
    return all(squash(fragment) in output for fragment in fragments)


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- help ----------------------------------------------------------------------------------


def _group(command: object) -> TyperGroup:
    assert isinstance(command, TyperGroup)
    return command


COMMANDS = _group(typer.main.get_command(app))
TOP_LEVEL = sorted(COMMANDS.commands)
ROUND_COMMANDS = sorted(_group(COMMANDS.commands["round"]).commands)
ALL_PATHS = [[name] for name in TOP_LEVEL] + [["round", sub] for sub in ROUND_COMMANDS]


def test_the_documented_commands_exist() -> None:
    assert {"dev", "demo", "worker", "gateway", "migrate", "round"} <= set(TOP_LEVEL)
    assert {"start", "show"} <= set(ROUND_COMMANDS)


def test_the_top_level_help_lists_every_command(invoke: Invoke) -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for name in TOP_LEVEL:
        assert re.search(rf"^\W*{name}\s", ANSI.sub("", result.output), re.MULTILINE), name


def test_the_round_help_lists_its_commands(invoke: Invoke) -> None:
    result = invoke(["round", "--help"])
    assert result.exit_code == 0
    for name in ROUND_COMMANDS:
        assert re.search(rf"^\W*{name}\s", ANSI.sub("", result.output), re.MULTILINE), name


@pytest.mark.parametrize("path", ALL_PATHS, ids=" ".join)
def test_each_commands_help_names_the_command(invoke: Invoke, path: list[str]) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    assert says(result, "Usage: amend " + " ".join(path)), result.output


# -- round start: bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "complaint"),
    [
        ("spec.yaml", "round_id: r1\nreviewers: [U1\n", "is not valid yaml"),
        ("spec.yml", "round_id: r1\n  reviewers: - U1\n\t- x", "is not valid yml"),
        ("spec.json", '{"round_id": "r1", "reviewers": ["U1"]', "is not valid json"),
        ("spec.yaml", "- r1\n- U1\n", "a round spec is a mapping of fields"),
        ("spec.yaml", "", "a round spec is a mapping of fields"),
    ],
    ids=["yaml", "yml", "json", "a-list", "empty"],
)
def test_a_malformed_spec_file_exits_2_and_names_the_file(
    invoke: Invoke, tmp_path: Path, name: str, text: str, complaint: str
) -> None:
    spec = write_spec(tmp_path, text, name)
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, str(spec), complaint), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("max_proposals: 0", "max_proposals"),
        ("max_proposals: many", "max_proposals"),
        ("reminder_interval: 0", "reminder_interval"),
        ("escalate_after: 0", "escalate_after"),
        ("reviewerz: [U2]", "reviewerz"),
        ("training: {method: rlhf}", "training.method"),
        ("gate: {max_awareness_gap: 2}", "gate.max_awareness_gap"),
    ],
)
def test_a_spec_with_a_bad_field_exits_2_naming_the_field(
    invoke: Invoke, tmp_path: Path, line: str, field: str
) -> None:
    spec = write_spec(tmp_path, f"{GOOD_SPEC}{line}\n")
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "invalid round spec", f"{field}:"), result.output


@pytest.mark.parametrize("round_id", ["Spring 1", "spring_1", "-spring", "x" * 64])
def test_a_spec_with_a_bad_round_id_exits_2_naming_the_field(
    invoke: Invoke, tmp_path: Path, round_id: str
) -> None:
    spec = write_spec(tmp_path, json.dumps({"round_id": round_id, "reviewers": ["U1"]}), "s.json")
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "round_id:", "round id must be"), result.output


@pytest.mark.parametrize("reviewers", ["", "reviewers: []\n"], ids=["absent", "empty"])
def test_a_round_without_reviewers_exits_2_naming_reviewers(
    invoke: Invoke, tmp_path: Path, reviewers: str
) -> None:
    spec = write_spec(tmp_path, f"round_id: r1\n{reviewers}")
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "reviewers:"), result.output


def test_a_round_without_an_id_exits_2_naming_round_id(invoke: Invoke) -> None:
    result = invoke(["round", "start", "--reviewer", "U1"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "round_id:"), result.output


def test_a_missing_spec_file_exits_2_and_names_it(invoke: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-spec.yaml"
    result = invoke(["round", "start", "--spec", str(missing)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, f"cannot read {missing}"), result.output


def test_importing_a_missing_document_exits_2_and_names_it(invoke: Invoke, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-constitution.md"
    result = invoke(["constitution", "import", str(missing)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, f"cannot read {missing}"), result.output


def test_a_spec_path_with_brackets_is_named_verbatim(invoke: Invoke, tmp_path: Path) -> None:
    # Paths and user input are text, never console markup: "[v2]" must not vanish.
    missing = tmp_path / "spec[v2].yaml"
    result = invoke(["round", "start", "--spec", str(missing)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, f"cannot read {missing}"), result.output


@pytest.mark.parametrize("key", ["[bold]", "[/bold]"])
def test_a_spec_field_that_looks_like_markup_is_named_verbatim(
    invoke: Invoke, tmp_path: Path, key: str
) -> None:
    spec = write_spec(tmp_path, GOOD_SPEC + json.dumps({key: 1})[1:-1] + "\n")
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "invalid round spec", f"{key}:"), result.output


def test_a_flag_out_of_range_is_a_usage_error(invoke: Invoke, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, GOOD_SPEC)
    result = invoke(["round", "start", "--spec", str(spec), "--max-proposals", "0"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "--max-proposals"), result.output


# -- unreachable Temporal --------------------------------------------------------------------


def test_round_start_exits_3_when_temporal_cannot_be_reached(
    invoke: Invoke, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, GOOD_SPEC)
    result = invoke(["round", "start", "--spec", str(spec)])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert says(result, f"cannot reach Temporal at {UNREACHABLE_TEMPORAL}"), result.output
    assert "started round" not in result.output


def test_flags_win_over_the_spec_file(invoke: Invoke, tmp_path: Path) -> None:
    # The spec alone is invalid; the flags repair it, so the command gets as far
    # as Temporal (unreachable here) instead of stopping at validation.
    spec = write_spec(tmp_path, "round_id: Not Valid\nmax_proposals: 0\n")
    alone = invoke(["round", "start", "--spec", str(spec)])
    assert alone.exit_code == EXIT_USAGE, alone.output
    repaired = invoke(
        ["round", "start", "--spec", str(spec), "--id", "ok-1", "--reviewer", "U1",
         "--max-proposals", "2"]
    )  # fmt: skip
    assert repaired.exit_code == EXIT_UNREACHABLE, repaired.output
    assert says(repaired, "cannot reach Temporal"), repaired.output


def test_round_show_exits_3_when_temporal_cannot_be_reached(invoke: Invoke) -> None:
    result = invoke(["round", "show", "spring-1"])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert says(result, f"cannot reach Temporal at {UNREACHABLE_TEMPORAL}"), result.output


# -- processes that need a database ------------------------------------------------------------


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_a_process_without_a_database_url_exits_2_saying_what_to_set(
    invoke: Invoke, command: str
) -> None:
    result = invoke([command])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "set AMEND_DATABASE_URL"), result.output


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_a_process_with_a_database_url_but_no_temporal_exits_3(
    invoke: Invoke, command: str
) -> None:
    result = invoke([command], env={"AMEND_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/x"})
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert says(result, f"cannot reach Temporal at {UNREACHABLE_TEMPORAL}"), result.output


@pytest.mark.parametrize("command", [["worker"], ["gateway"], ["round", "show", "r1"]])
def test_bad_settings_exit_2_naming_the_setting(invoke: Invoke, command: list[str]) -> None:
    result = invoke(command, env={"AMEND_GATEWAY_PORT": "not-a-port"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert ANSI.sub("", result.output).strip().count("\n") == 0, result.output
    assert says(result, "bad settings: AMEND_GATEWAY_PORT='not-a-port'"), result.output


@pytest.mark.parametrize(
    ("value", "why"),
    [("-1", "greater than or equal to 0"), ("1000", "less than or equal to 60"), ("1s", "number")],
)
def test_a_slack_post_interval_that_cannot_pace_stops_the_worker_naming_it(
    invoke: Invoke, value: str, why: str
) -> None:
    result = invoke(["worker"], env={"AMEND_SLACK_POST_INTERVAL_S": value})
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, f"bad settings: AMEND_SLACK_POST_INTERVAL_S={value!r}", why), result.output


@pytest.mark.parametrize("command", [["round", "list"], ["worker"], ["migrate"]])
def test_a_database_url_that_is_not_one_is_one_line_and_exit_2(
    invoke: Invoke, command: list[str]
) -> None:
    result = invoke(command, env={"AMEND_DATABASE_URL": "notaurl"})
    assert result.exit_code == EXIT_USAGE, result.output
    lines = ANSI.sub("", result.output).strip().splitlines()
    assert len(lines) == 1, result.output
    assert "AMEND_DATABASE_URL: must be a PostgreSQL URL" in lines[0]
    assert "notaurl" not in lines[0]  # the URL may hold a password: never echoed


def test_round_watch_draws_the_state_pending_count_and_a_progress_bar() -> None:
    from rich.console import Console

    from constitution import RoundSpec, RoundState
    from constitution.contracts import Progress, RoundStatus
    from worker.cli.render import watch_view

    status = RoundStatus(
        spec=RoundSpec(round_id="drawn", reviewers=["U1"]),
        state=RoundState.generating_data,
        progress=Progress(stage="generating data", done=30, total=120, detail="critique"),
    )
    screen = Console(record=True, width=100, force_terminal=False)
    screen.print(watch_view(status))
    text = screen.export_text()
    assert "round drawn" in text and "generating_data" in text
    assert "generating data (critique)" in text and "30/120" in text
    ended = status.model_copy(update={"state": RoundState.completed})
    screen = Console(record=True, width=100, force_terminal=False)
    screen.print(watch_view(ended))
    assert "30/120" not in screen.export_text()  # no bar once the round has ended


def test_a_bad_earlier_round_for_evidence_exits_2_naming_the_field(invoke: Invoke) -> None:
    result = invoke(
        ["round", "start", "--id", "r2", "--reviewer", "U1", "--evidence-from-round", "Round 1"]
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert says(result, "evidence_from_round"), result.output


EVIDENCE_LINE = (
    '{"id": "ev-1", "kind": "red_team", "summary": "The model gave doses.", "principles": ["P1"]}\n'
)


def test_evidence_flags_may_repeat(invoke: Invoke, tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(EVIDENCE_LINE)
    (tmp_path / "b.jsonl").write_text(EVIDENCE_LINE.replace("ev-1", "ev-2"))
    result = invoke(
        ["round", "start", "--id", "r2", "--reviewer", "U1", "--evidence", "a.jsonl",
         "--evidence", "b.jsonl"]
    )  # fmt: skip
    # Accepted: the command gets past validation as far as Temporal (unreachable here).
    assert result.exit_code == EXIT_UNREACHABLE, result.output


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (None, "cannot read evidence (No such file or directory)"),
        ('{"id": "ev-1", "kind": "gossip", "summary": "x"}\n', ":1: kind: Input should be"),
        ("not json\n", ":1: not JSON"),
    ],
    ids=["missing", "unknown-kind", "not-json"],
)
def test_bad_evidence_is_refused_before_the_round_starts(
    invoke: Invoke, tmp_path: Path, text: str | None, complaint: str
) -> None:
    evidence = tmp_path / "evidence.jsonl"
    if text is not None:
        evidence.write_text(text)
    spec = write_spec(tmp_path, f"{GOOD_SPEC}evidence_file: {evidence}\n")
    for args in (
        ["--spec", str(spec)],
        ["--id", "r2", "--reviewer", "U1", "--evidence", str(evidence)],
    ):
        result = invoke(["round", "start", *args])
        assert result.exit_code == EXIT_USAGE, result.output
        assert says(result, "bad evidence, the round was not started", str(evidence), complaint)
        assert "cannot reach Temporal" not in result.output  # refused before reaching it


# -- the CLI as a whole -------------------------------------------------------------------


def _leaves(command: object, path: list[str]) -> list[tuple[list[str], object]]:
    found = getattr(command, "commands", None)
    if found is None:
        return [(path, command)]
    return [leaf for name, sub in found.items() for leaf in _leaves(sub, [*path, name])]


LEAVES = _leaves(COMMANDS, [])
# They run until stopped and print a status, not a result; `constitution export`
# prints the document itself, as --format json when asked.
NO_RESULT = {("dev",), ("worker",), ("gateway",), ("constitution", "export")}


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_and_argument_has_a_help_text(path: list[str], command: object) -> None:
    for param in getattr(command, "params", []):
        assert getattr(param, "help", None), f"amend {' '.join(path)}: {param.name} has no help"


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_that_prints_a_result_takes_json(path: list[str], command: object) -> None:
    options = {o for p in getattr(command, "params", []) for o in getattr(p, "opts", [])}
    assert ("--json" in options) == (tuple(path) not in NO_RESULT), " ".join(path)


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_help_texts_break_lines_only_between_paragraphs(
    invoke: Invoke, path: list[str], command: object
) -> None:
    text = getattr(command, "help", None) or ""
    assert text, f"amend {' '.join(path)} has no help"
    for paragraph in text.split("\n\n"):
        assert "\n" not in paragraph, f"amend {' '.join(path)}: a line break mid-paragraph"
    # And at 80 columns the whole help fits.
    shown = invoke([*path, "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0 and max(map(len, ANSI.sub("", shown.output).splitlines())) <= 80


def test_the_version_is_printed(invoke: Invoke) -> None:
    from importlib.metadata import version

    result = invoke(["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"amend {version('amend')}"


def test_a_ledger_command_while_the_dev_stacks_database_is_down_says_so(
    invoke: Invoke, tmp_path: Path
) -> None:
    from worker.datadir import claimed

    # A dev stack holds the data dir, but its PostgreSQL is not running.
    with claimed(tmp_path / "data", "amend dev"):
        result = invoke(["round", "list"])
    assert result.exit_code == EXIT_UNREACHABLE, result.output
    assert says(result, "the database is down", "`amend dev`"), result.output
    assert "run `amend dev`" not in result.output


@pytest.mark.parametrize(
    "setting", ["AMEND_GATEWAY_PORT", "AMEND_TEMPORAL_ADDRESS", "AMEND_TEMPORAL_UI_PORT"]
)
def test_a_busy_port_stops_the_dev_stack_before_it_starts_naming_the_setting(
    invoke: Invoke, tmp_path: Path, setting: str
) -> None:
    from standins.serving import free_port, listening_socket

    with listening_socket("127.0.0.1", 0) as taken:
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {
            "AMEND_GATEWAY_PORT": str(free_port()),
            "AMEND_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "AMEND_TEMPORAL_UI_PORT": str(free_port()),
            "AMEND_STAND_IN_PORT_MODEL": str(free_port()),
            "AMEND_STAND_IN_PORT_SLACK": str(free_port()),
        }
        ports[setting] = f"127.0.0.1:{busy}" if setting == "AMEND_TEMPORAL_ADDRESS" else str(busy)
        result = invoke(["dev"], env=ports)
    assert result.exit_code == EXIT_USAGE, result.output
    lines = ANSI.sub("", result.output).strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"port {busy} on 127.0.0.1 is already in use" in lines[0]
    assert f"set {setting} to a free port" in lines[0]
    # Refused before anything started: no database, no Temporal file.
    assert not (tmp_path / "data" / "postgres").exists()
    assert not (tmp_path / "data" / "temporal.db").exists()
