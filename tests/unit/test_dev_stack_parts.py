"""The parts the dev stack watches itself with, without starting it: the claim
on a data directory, ports bound before a server starts, servers that leave
Ctrl-C to the process and answer without Nagle's wait, one-line warnings, and
a Slack workspace that outlives a restart."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from pathlib import Path

import httpx
import pytest

from standins.serving import PortInUse, free_port, listening_socket, port_in_use, serve
from standins.slack.app import create_app
from standins.slack.config import SlackStandInConfig
from worker.datadir import claimed, holder
from worker.failures import DataDirBusy
from worker.observability import WithoutTraceback


def test_a_data_directory_is_held_by_one_stack_and_named_to_the_next(tmp_path: Path) -> None:
    assert holder(tmp_path) is None
    with claimed(tmp_path, "amend dev"):
        found = holder(tmp_path)
        assert found is not None and found.command == "amend dev"
        with (
            pytest.raises(DataDirBusy, match=r"in use by `amend dev` \(pid \d+"),
            claimed(tmp_path, "amend demo"),
        ):
            pass
    # Let go on exit, so the next stack may start.
    assert holder(tmp_path) is None
    with claimed(tmp_path, "amend demo"):
        pass


def test_a_port_in_use_is_found_before_a_server_starts() -> None:
    with listening_socket("127.0.0.1", 0) as taken:
        taken.listen()
        port = taken.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        with pytest.raises(PortInUse) as refused:
            listening_socket("127.0.0.1", port)
    assert refused.value.port == port
    assert not port_in_use("127.0.0.1", port)


def test_a_free_port_lies_outside_the_range_outgoing_connections_take_ports_from() -> None:
    """A port from `bind(0)` could be taken by any client's connection before the
    server handed it starts (CI saw `amend dev` refused its gateway port so)."""
    low, high = (
        int(part) for part in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    for port in ports:
        assert not low <= port <= high
        assert not port_in_use("127.0.0.1", port)
    # An outgoing connection's own port is in that range, so none of them can be it.
    with listening_socket("127.0.0.1", free_port()) as server:
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            assert low <= client.getsockname()[1] <= high


async def test_a_served_app_leaves_sigint_to_the_process() -> None:
    before = signal.getsignal(signal.SIGINT)
    async with serve(create_app()) as served:
        # uvicorn would have put its own handler in place while serving.
        assert signal.getsignal(signal.SIGINT) is before
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{served.url}/_standin/messages")).status_code == 200


async def test_connections_a_server_accepts_on_its_socket_send_without_nagles_wait() -> None:
    """uvicorn writes an answer's head and body apart; with Nagle on, the body
    waits for the client's delayed ACK (40 ms on Linux) on every answer."""
    nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Accepted(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    sock = listening_socket("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Accepted, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname())
        assert await asyncio.wait_for(nodelay, 5) != 0
        writer.close()


def test_a_library_warning_with_a_traceback_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("amend.test.pool")
    log.addFilter(WithoutTraceback())
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError:
        log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    [record] = caplog.records
    assert record.exc_info is None
    assert record.getMessage() == (
        "Failed to restore the pool connection floor; retrying "
        "(ConnectionRefusedError: [Errno 111] Connection refused)"
    )


async def test_the_slack_stand_in_keeps_its_workspace_across_a_restart(tmp_path: Path) -> None:
    store = tmp_path / "slack-stand-in.json"
    config = SlackStandInConfig()
    auth = {"Authorization": f"Bearer {config.bot_token}"}

    async def call(app: object, method: str, **params: object) -> dict[str, object]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://slack") as http:
            answer: dict[str, object] = (
                await http.post(f"/api/{method}", json=params, headers=auth)
            ).json()
        return answer

    first = create_app(config, store=store)
    posted = await call(first, "chat.postMessage", channel="C0AMENDREVIEW", text="Proposal r1-p1")
    assert posted["ok"] is True

    again = create_app(config, store=store)  # amend dev restarted
    edited = await call(again, "chat.update", channel="C0AMENDREVIEW", ts=posted["ts"], text="Done")
    assert edited["ok"] is True, edited
    newer = await call(again, "chat.postMessage", channel="C0AMENDREVIEW", text="Proposal r2-p1")
    assert str(newer["ts"]) > str(posted["ts"])  # no ts handed out twice
    transport = httpx.ASGITransport(app=again)
    async with httpx.AsyncClient(transport=transport, base_url="http://slack") as http:
        messages = (await http.get("/_standin/messages")).json()
    assert [m["text"] for m in messages] == ["Done", "Proposal r2-p1"]
    assert messages[0]["history"][0]["text"] == "Proposal r1-p1"
