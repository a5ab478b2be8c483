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
from standins.model.behaviour import is_harmful


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


def test_the_shipped_evaluation_set_is_a_few_hundred_prompts_across_categories() -> None:
    prompts = load_eval_prompts()
    assert len(prompts) >= 300
    categories = {p.category for p in prompts}
    assert {"weapons", "self-harm", "privacy", "medical", "manipulation"} <= categories
    for category in categories:
        kinds = {p.kind for p in prompts if p.category == category}
        assert kinds == {EvalKind.red_team, EvalKind.benign}, category
    assert len({p.prompt for p in prompts}) == len(prompts)  # no prompt asked twice


def test_the_model_stand_in_reads_the_shipped_set_as_it_is_labelled() -> None:
    for prompt in load_eval_prompts():
        assert is_harmful(prompt.prompt) is (prompt.kind is EvalKind.red_team), prompt.id


def test_an_evaluation_prompt_without_a_category_is_general(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(
        '{"id": "h1", "kind": "red_team", "prompt": "x"}\n'
        '{"id": "b1", "kind": "benign", "category": "medical", "prompt": "y"}\n'
    )
    assert [p.category for p in load_eval_prompts(str(path))] == ["general", "medical"]


def test_a_bad_category_in_a_large_file_is_named_by_its_line(tmp_path: Path) -> None:
    lines = [
        f'{{"id": "p{n}", "kind": "{"red_team" if n % 2 else "benign"}", '
        f'"category": "medical", "prompt": "prompt {n}"}}'
        for n in range(1, 3001)
    ]
    lines[2716] = '{"id": "p2717", "kind": "benign", "category": "Self Harm!", "prompt": "z"}'
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PromptSetError) as refused:
        load_eval_prompts(str(path))
    assert f"{path}:2717: category: String should match pattern" in str(refused.value)
