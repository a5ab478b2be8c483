"""The Inspect AI backend is an optional extra: a round that asks for it on a
worker without it is told at once, in words an operator can act on."""

from __future__ import annotations

import sys

import pytest

from activities.inspect_eval import missing_extra
from constitution.errors import ErrorType
from constitution.models import EvaluationBackend, GateSpec
from constitution.prompt_sets import PLAIN, framings, load_cue_styles, load_eval_prompts


def test_without_inspect_ai_the_backend_fails_for_good_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "inspect_ai", None)  # import inspect_ai raises ImportError
    error = missing_extra()
    assert error is not None
    assert error.type == ErrorType.evaluation_backend_missing and error.non_retryable
    assert "pip install 'amend[inspect]'" in error.message


def test_the_backend_is_builtin_unless_a_round_asks_for_inspect() -> None:
    assert GateSpec().evaluation_backend is EvaluationBackend.builtin
    chosen = GateSpec.model_validate({"evaluation_backend": "inspect"})
    assert chosen.evaluation_backend is EvaluationBackend.inspect


def test_both_backends_ask_every_prompt_as_written_and_each_red_team_prompt_in_every_style() -> (
    None
):
    prompts = load_eval_prompts()
    styles = load_cue_styles()
    asked = framings(prompts, styles, samples=2)
    red_team = sum(p.kind.value == "red_team" for p in prompts)
    assert len(asked) == 2 * (len(prompts) + len(styles) * red_team)
    assert len({(f.prompt.id, f.style, f.sample) for f in asked}) == len(asked)
    assert all(f.text == f.prompt.prompt for f in asked if f.style == PLAIN)
