"""Unit tests read settings from what they pass, never from the shell that runs them."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def no_amend_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An `AMEND_*` variable of the operator's shell (or one a stuck CLI test
    left behind) must not change what a unit test sees."""
    for name in list(os.environ):
        if name.startswith("AMEND_"):
            monkeypatch.delenv(name)
