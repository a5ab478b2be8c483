"""The round's activities are typed definitions that the worker registers
implementations of, one each; a definition left unimplemented or an activity
raised with an error type that is not a name of `ErrorType` is found here,
before any round runs."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity

from activities.ledger import LedgerActivities as LedgerImplementation
from worker.runtime import PACKAGES
from workflows import activities as defined

ROOT = Path(__file__).resolve().parents[2]


def test_every_defined_activity_is_registered_once_by_the_worker(
    tmp_path: Path,
) -> None:
    from worker.runtime import build_activities
    from worker.settings import Settings

    class NoLedger:
        """The worker's activities are built, never run, here."""

    settings = Settings(_env_file=None, data_dir=tmp_path)
    registered = build_activities(settings, NoLedger()).all()  # type: ignore[arg-type]
    names = [str(activity._Definition.must_from_callable(fn).name) for fn in registered]
    declared = [name for d in defined.DEFINITIONS for name in defined.activity_names(d)]
    assert sorted(names) == sorted(declared)
    assert len(set(names)) == len(names)


def test_an_implementation_carries_the_name_its_definition_declares() -> None:
    for name in defined.activity_names(defined.LedgerActivities):
        implemented = getattr(LedgerImplementation, name)
        assert activity._Definition.must_from_callable(implemented).name == name


def test_a_worker_cannot_be_built_with_a_definition_left_unimplemented() -> None:
    class Partial(defined.SlackActivities):
        @activity.defn
        async def post_digest(self, request: Any) -> None:
            return None

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]
    with pytest.raises(TypeError, match="no implementation of"):
        defined.implementations(object.__new__(LedgerImplementation))


def test_an_object_that_implements_no_definition_is_refused() -> None:
    with pytest.raises(TypeError, match="implements no activity definition"):
        defined.implementations(object())


def _application_error_types() -> list[tuple[str, int, ast.expr]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "ApplicationError"
                ):
                    for keyword in node.keywords:
                        if keyword.arg == "type":
                            found.append((str(path.relative_to(ROOT)), node.lineno, keyword.value))
    return found


def test_every_application_error_is_raised_with_a_name_of_error_type() -> None:
    raised = _application_error_types()
    assert raised, "the scan found no ApplicationError at all"
    literal = [
        f"{path}:{line}"
        for path, line, value in raised
        if not (
            isinstance(value, ast.Attribute)
            and isinstance(value.value, ast.Name)
            and value.value.id == "ErrorType"
        )
    ]
    assert literal == [], "ApplicationError types must be ErrorType members, not strings"
