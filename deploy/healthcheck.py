"""Container health checks for amend, shipped in the image as /opt/amend/healthcheck.py.

    python /opt/amend/healthcheck.py gateway   the gateway answers GET /healthz (which
                                               also checks the ledger database)
    python /opt/amend/healthcheck.py worker    a worker in this container is polling its
                                               task queue for workflow and activity tasks

Both read the same AMEND_* settings as the process they check. Exit status 0:
healthy; 1: not. Used by deploy/compose.yaml; Kubernetes probes the gateway over
HTTP and may use the worker check as an exec readiness probe.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

from worker.settings import Settings

POLL_FRESHNESS = timedelta(seconds=90)


def gateway_healthy(settings: Settings) -> bool:
    host = settings.gateway_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    url = f"http://{host}:{settings.gateway_port}/healthz"
    with urllib.request.urlopen(url, timeout=5) as response:
        return bool(response.status == 200)


async def worker_healthy(settings: Settings) -> bool:
    """True when a poller from this host (the SDK's identity is `pid@hostname`)
    polled both the workflow and the activity task queue within POLL_FRESHNESS.

    Temporal lists pollers for a while after they stop; an active worker renews
    its long polls at least about once a minute, so an older poll is a gone worker.
    """
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await asyncio.wait_for(
        Client.connect(settings.temporal_address, namespace=settings.temporal_namespace), 5
    )
    suffix = "@" + socket.gethostname()
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.temporal_task_queue),
                task_queue_type=kind,
            ),
            timeout=timedelta(seconds=5),
        )
        now = datetime.now(UTC)
        if not any(
            poller.identity.endswith(suffix)
            and now - poller.last_access_time.ToDatetime(UTC) < POLL_FRESHNESS
            for poller in described.pollers
        ):
            return False
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in ("gateway", "worker"):
        print("usage: healthcheck.py gateway|worker", file=sys.stderr)
        return 2
    settings = Settings()
    try:
        healthy = (
            gateway_healthy(settings)
            if argv[1] == "gateway"
            else asyncio.run(worker_healthy(settings))
        )
    except Exception as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    if not healthy and argv[1] == "worker":
        print(
            f"unhealthy: no poller from {socket.gethostname()} on {settings.temporal_task_queue}",
            file=sys.stderr,
        )
    elif not healthy:
        print("unhealthy: /healthz did not answer 200", file=sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the Temporal SDK's native runtime can abort
    # while finalizing, which would turn "unhealthy" (1) into a crash (134).
    os._exit(code)
