"""Prompt sets: the shipped ones load, and a bad user file is refused naming
its line and field before any model call is paid for."""

from __future__ import annotations

from pathlib import Path

import pytest

from constitution.prompt_sets import (
    EvalKind,
    PromptSetError,
    load_eval_prompts,
    load_training_prompts,
)


def test_the_shipped_sets_load_with_both_kinds_of_evaluation_prompt() -> None:
    assert len(load_training_prompts()) >= 8
    kinds = {p.kind for p in load_eval_prompts()}
    assert kinds == {EvalKind.red_team, EvalKind.benign}


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('{"id": "a", "prompt": "x"}\n{"id": "b"\n', ":2: not JSON"),
        ('{"id": "a", "prompt": "x"}\n\n{"id": "b"}\n', ":3: prompt: Field required"),
        ('{"id": "a", "prompt": ""}\n', ":1: prompt: String should have at least 1 character"),
        ('{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', ":2: duplicate prompt id"),
        ('{"id": "a", "prompt": "x", "extra": 1}\n', ":1: extra: Extra inputs"),
        ("\n\n", ": the prompt set is empty"),
    ],
)
def test_a_bad_training_prompt_file_names_the_line(
    tmp_path: Path, lines: str, expected: str
) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(lines)
    with pytest.raises(PromptSetError) as refused:
        load_training_prompts(str(path))
    assert f"{path}{expected}" in str(refused.value)


def test_an_evaluation_set_without_benign_prompts_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"id": "h1", "kind": "red_team", "prompt": "x"}\n')
    with pytest.raises(PromptSetError, match="no benign prompts"):
        load_eval_prompts(str(path))


def test_an_unknown_evaluation_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"id": "h1", "kind": "spicy", "prompt": "x"}\n')
    with pytest.raises(PromptSetError, match=":1: kind: Input should be 'red_team' or 'benign'"):
        load_eval_prompts(str(path))


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PromptSetError, match="cannot read the prompt set"):
        load_training_prompts(str(tmp_path / "nope.jsonl"))
