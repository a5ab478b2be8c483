"""The Slack and model stand-ins as processes of their own, for the chaos suite.

Run as ``python -m bench.chaos.standins slack|model --port P --store FILE``.
Each keeps its state in FILE and reads it back when started again, as a real
Slack workspace or model provider outlives an outage: a message posted before
the outage is still there to click and to update after it, and a fine-tuning
job created before it can still be polled (and found by its metadata) after.

The Slack stand-in keeps its workspace itself (`create_app(store=...)`); the
model stand-in keeps only memory, so `KeptModelServer` writes the part of its
state a restart must not lose (files, fine-tuning jobs, the id counter) after
every request that can change it. Both also serve ``/_chaos/*`` routes the
suite needs that no test of the stand-ins does: deleting a message, as a
person deleting it in Slack would.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import os
import signal
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from standins.model.app import create_app as create_model
from standins.model.config import ScriptedModelConfig
from standins.model.state import FineTuningJob, JobEvent, ModelServerState, StoredFile
from standins.serving import serve
from standins.slack.app import create_app as create_slack
from standins.slack.config import SlackStandInConfig
from standins.slack.state import standin_state

CHANNEL = "C0AMENDCHAOS"
BOT_TOKEN = "xoxb-amend-chaos-stand-in"
# Slack expires a trigger id 3 s after the click: a modal opened later fails.
TRIGGER_TTL_S = 3.0


class DeletedMessage(BaseModel):
    """`POST /_chaos/delete`: the message a person deletes in Slack."""

    channel: str
    ts: str


def slack_app(store: Path) -> FastAPI:
    """The Slack stand-in keeping its workspace in `store`, with trigger ids
    that expire as Slack's do, and a route to delete a message."""
    config = SlackStandInConfig(
        bot_token=BOT_TOKEN,
        channels=[CHANNEL],
        channel_names={CHANNEL: "amend-chaos"},
        trigger_ttl_seconds=TRIGGER_TTL_S,
    )
    app = create_slack(config, store=store)
    router = APIRouter()

    @router.post("/_chaos/delete")
    async def delete(body: DeletedMessage) -> dict[str, bool]:
        state = standin_state(app)
        found = state.drop_message(body.channel, body.ts)
        state.keep()
        return {"deleted": found is not None}

    app.include_router(router)
    return app


class KeptModelServer:
    """ASGI wrapper keeping the model stand-in's durable state in a file.

    Chat completions change nothing worth keeping; files and fine-tuning jobs
    are what a provider keeps, so the state is written after every request
    under /v1/files or /v1/fine_tuning (whole, then renamed, so a kill leaves
    the last complete copy) and read back when the process starts.
    """

    KEPT_PATHS = ("/v1/files", "/v1/fine_tuning")

    def __init__(self, app: FastAPI, store: Path) -> None:
        self.app: ASGIApp = app
        self.state: ModelServerState = app.state.standin
        self.store = store
        self.load()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and str(scope["path"]).startswith(self.KEPT_PATHS):
            self.keep()

    def keep(self) -> None:
        state = self.state
        kept = {
            "counter": state.counter,
            "files": [
                {**dataclasses.asdict(f), "content": base64.b64encode(f.content).decode()}
                for f in state.files.values()
            ],
            "jobs": [dataclasses.asdict(j) for j in state.jobs.values()],
            "fine_tuned_models": state.fine_tuned_models,
            "overcautious_models": sorted(state.overcautious_models),
        }
        partial = self.store.with_suffix(".partial")
        partial.write_text(json.dumps(kept))
        os.replace(partial, self.store)

    def load(self) -> None:
        if not self.store.exists():
            return
        kept: dict[str, Any] = json.loads(self.store.read_text())
        state = self.state
        state.counter = kept["counter"]
        for f in kept["files"]:
            stored = StoredFile(**{**f, "content": base64.b64decode(f["content"])})
            state.files[stored.id] = stored
        for j in kept["jobs"]:
            events = [JobEvent(**e) for e in j.pop("events")]
            job = FineTuningJob(**j, events=events)
            state.jobs[job.id] = job
        state.fine_tuned_models = list(kept["fine_tuned_models"])
        state.overcautious_models = set(kept["overcautious_models"])


def model_app(store: Path) -> KeptModelServer:
    """The scripted model stand-in, answering a little slowly as a loaded
    server does, its files and fine-tuning jobs kept in `store`."""
    return KeptModelServer(create_model(ScriptedModelConfig(latency_s=0.05)), store)


async def serve_until_stopped(app: Any, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(app, "127.0.0.1", port):
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["slack", "model"], help="Which stand-in to serve.")
    parser.add_argument("--port", type=int, required=True, help="Loopback port to serve on.")
    parser.add_argument("--store", type=Path, required=True, help="File its state is kept in.")
    args = parser.parse_args()
    app = slack_app(args.store) if args.kind == "slack" else model_app(args.store)
    asyncio.run(serve_until_stopped(app, args.port))


if __name__ == "__main__":
    main()
