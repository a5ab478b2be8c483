"""The Grafana dashboard and its provisioning (deploy/grafana/), checked
without Grafana: every ledger panel reads the provisioned data source, and
every panel's SQL runs against a freshly migrated ledger (Grafana's macros
replaced by what Grafana would send), so a renamed view or column fails here.
The alert row reads Prometheus through the dashboard's `prometheus` variable;
`tests/test_observability.py` checks its queries name what the gateway serves."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

GRAFANA = Path(__file__).resolve().parent.parent / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "amend.json"
DATASOURCE = GRAFANA / "provisioning" / "datasources" / "amend.yaml"
PROVIDER = GRAFANA / "provisioning" / "dashboards" / "amend.yaml"


def panels() -> list[dict[str, Any]]:
    """Every panel that shows something (rows only group them)."""
    found: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in found if p["type"] != "row"]


def ledger_panels() -> list[dict[str, Any]]:
    return [p for p in panels() if p["datasource"]["type"] != "prometheus"]


def prometheus_panels() -> list[dict[str, Any]]:
    return [p for p in panels() if p["datasource"]["type"] == "prometheus"]


def grafana_sql(sql: str) -> str:
    """Expand the macros Grafana's PostgreSQL data source expands."""
    return re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 BETWEEN now() - interval '30 days' AND now()",
        sql,
    )


def test_the_provisioned_data_source_is_the_one_every_panel_reads() -> None:
    [source] = yaml.safe_load(DATASOURCE.read_text())["datasources"]
    assert source["type"] == "grafana-postgresql-datasource"
    assert source["jsonData"]["database"] == "amend"
    assert source["secureJsonData"]["password"].startswith("${")  # from the environment
    for panel in ledger_panels():
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_the_alert_panels_read_the_prometheus_the_dashboard_variable_picks() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["name"] == "prometheus"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    found = prometheus_panels()
    assert {"proposals pending", "oldest pending proposal", "rounds blocked on slack"} <= {
        p["title"].lower() for p in found
    }
    for panel in found:
        assert panel["datasource"]["uid"] == "${prometheus}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${prometheus}" and target["expr"]
    [provider] = yaml.safe_load(PROVIDER.read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


def test_the_dashboard_shows_what_operators_asked_for_without_overlaps() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 36
    titles = " | ".join(p["title"].lower() for p in panels())
    for wanted in ("rounds by state", "decision latency", "pending proposals", "harm rate"):
        assert wanted in titles
    everything = json.loads(DASHBOARD.read_text())["panels"]
    ids = [p["id"] for p in everything]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in everything:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


@pytest.mark.parametrize("panel", ledger_panels(), ids=lambda p: p["title"])
async def test_each_panels_sql_runs_on_the_migrated_ledger(
    database_url: str, panel: dict[str, Any]
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for target in panel["targets"]:
            sql = grafana_sql(target["rawSql"])
            assert "$__" not in sql, f"unexpanded macro in {panel['title']}"
            columns = [a.name for a in (await conn.prepare(sql)).get_attributes()]
            await conn.fetch(sql)
            if target["format"] == "time_series":
                assert columns[0] == "time", panel["title"]
    finally:
        await conn.close()
