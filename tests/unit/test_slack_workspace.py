"""The Slack stand-in's kept workspace (a stand-in for Slack, which never
forgets a message): every answered call's change survives a restart or a
kill, and keeping it costs a call the same however much was posted before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from standins.slack.app import create_app
from standins.slack.config import SlackStandInConfig
from standins.slack.state import JOURNAL_AT_LEAST, KeptWorkspace, standin_state

CHANNEL = "C0AMENDREVIEW"
CONFIG = SlackStandInConfig()


async def call(app: FastAPI, method: str, **params: Any) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {CONFIG.bot_token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://slack") as http:
        answer: dict[str, Any] = (
            await http.post(f"/api/{method}", json=params, headers=auth)
        ).json()
    assert answer["ok"] is True, answer
    return answer


def workspace(app: FastAPI) -> dict[str, Any]:
    state = standin_state(app)
    return {
        "messages": {key: dict(m) for key, m in state.messages.items()},
        "ephemeral": list(state.ephemeral),
        "views": {key: dict(v) for key, v in state.views.items()},
    }


async def every_kind_of_change(app: FastAPI) -> None:
    """A post, a reply, an edit, a deletion, an ephemeral answer, a modal opened and changed."""
    first = await call(app, "chat.postMessage", channel=CHANNEL, text="Proposal r1-p1")
    await call(app, "chat.postMessage", channel=CHANNEL, text="reminder", thread_ts=first["ts"])
    await call(app, "chat.update", channel=CHANNEL, ts=first["ts"], text="Accepted")
    gone = await call(app, "chat.postMessage", channel=CHANNEL, text="Proposal r1-p2")
    await call(app, "chat.delete", channel=CHANNEL, ts=gone["ts"])
    await call(app, "chat.postEphemeral", channel=CHANNEL, user="U0ALICE", text="accept recorded")
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Modify"}, "blocks": []}
    opened = await call(app, "views.open", trigger_id="1.2.3", view=view)
    changed = {**view, "title": {"type": "plain_text", "text": "Modified"}}
    await call(app, "views.update", view_id=opened["view"]["id"], view=changed)


async def test_every_change_comes_back_after_a_restart_from_the_journal(tmp_path: Path) -> None:
    store = tmp_path / "slack-stand-in.json"
    first = create_app(CONFIG, store=store)
    await every_kind_of_change(first)
    again = create_app(CONFIG, store=store)  # amend dev restarted
    assert workspace(again) == workspace(first)
    # New ts values go on from the kept ones: none is handed out twice.
    newest = max(ts for _, ts in standin_state(first).messages)
    posted = await call(again, "chat.postMessage", channel=CHANNEL, text="after")
    assert posted["ts"] > newest


async def test_a_call_appends_its_change_without_rewriting_what_was_kept(tmp_path: Path) -> None:
    store = tmp_path / "slack-stand-in.json"
    app = create_app(CONFIG, store=store)
    journal = tmp_path / "slack-stand-in.json.journal"
    for n in range(50):
        await call(app, "chat.postMessage", channel=CHANNEL, text=f"post {n}")
    lines = journal.read_text().splitlines()
    assert len(lines) == 50
    # One line per call, each of its own message only: not the workspace again.
    assert [json.loads(line)["message"]["text"] for line in lines] == [
        f"post {n}" for n in range(50)
    ]
    assert not store.exists()


async def test_the_copy_is_rewritten_once_the_journal_outgrows_the_workspace(
    tmp_path: Path,
) -> None:
    store = tmp_path / "slack-stand-in.json"
    app = create_app(CONFIG, store=store)
    await call(app, "chat.postMessage", channel=CHANNEL, text="stays")
    for n in range(JOURNAL_AT_LEAST // 2):
        posted = await call(app, "chat.postMessage", channel=CHANNEL, text=f"gone {n}")
        await call(app, "chat.delete", channel=CHANNEL, ts=posted["ts"])
    # 1,001 changes to a workspace of one message: the copy holds them all.
    kept = KeptWorkspace.model_validate_json(store.read_text())
    journal = (tmp_path / "slack-stand-in.json.journal").read_text().splitlines()
    assert [m["text"] for m in kept.messages] == ["stays"]
    assert (kept.journal_seq, journal) == (JOURNAL_AT_LEAST + 1, [])
    assert workspace(create_app(CONFIG, store=store)) == workspace(app)


async def test_a_kill_mid_write_loses_only_the_unanswered_change(tmp_path: Path) -> None:
    store = tmp_path / "slack-stand-in.json"
    app = create_app(CONFIG, store=store)
    await every_kind_of_change(app)
    journal = tmp_path / "slack-stand-in.json.journal"
    with journal.open("a") as out:
        out.write('{"seq": 99, "message": {"channel": "C0AMENDREVIEW", "ts": "17')
    again = create_app(CONFIG, store=store)
    assert workspace(again) == workspace(app)
    # What the restarted stand-in keeps next is not lost behind the broken line.
    await call(again, "chat.postMessage", channel=CHANNEL, text="after the kill")
    assert workspace(create_app(CONFIG, store=store)) == workspace(again)


async def test_a_kill_between_rewriting_the_copy_and_emptying_the_journal_keeps_each_change_once(
    tmp_path: Path,
) -> None:
    store = tmp_path / "slack-stand-in.json"
    app = create_app(CONFIG, store=store)
    await every_kind_of_change(app)
    journal = tmp_path / "slack-stand-in.json.journal"
    entries = journal.read_text()
    standin_state(app).compact()
    journal.write_text(entries)  # as if killed after the copy was renamed
    again = workspace(create_app(CONFIG, store=store))
    assert len(again["ephemeral"]) == 1
    assert again == workspace(app)
