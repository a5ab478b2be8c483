"""Built-in pages: the rounds, a round's timeline and proposals, constitution
versions side by side, principle lineage, and charts of harm rate and decision
latency. Server-rendered HTML with inline SVG: no build step, no script
downloads, readable with JavaScript off.

Pages read the same queries as the dashboard API and need the same viewer
token; a browser signs in once on /login and carries it in an HttpOnly cookie.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from html import escape
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from constitution import TERMINAL_ROUND_STATES, RoundState, render_markdown
from gateway.auth import COOKIE, Caller, bearer, identify
from gateway.deps import services
from ledger.dashboards import (
    LARGEST_OFFSET,
    LARGEST_VERSION,
    LatencyPoint,
    VersionMetrics,
)

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:10px 24px;display:flex;gap:20px;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header b{margin-right:12px}
main{padding:18px 24px;max-width:1200px}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 18px}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef1f4;font-weight:600}
.state{display:inline-block;padding:1px 7px;border-radius:9px;background:#e8eefc;font-size:12px}
.state.completed,.state.accepted{background:#d9f5df}.state.failed,.state.rejected{background:#fde0e0}
.state.cancelled,.state.withdrawn{background:#eee}.state.in_review,.state.posted{background:#fff3cd}
.muted{color:#6a737d}.card{background:#fff;padding:12px 16px;margin:10px 0;border:1px solid #e3e6ea}
.diff td{font-family:ui-monospace,monospace;font-size:12px}.diff_add{background:#d9f5df}
.diff_chg{background:#fff3cd}.diff_sub{background:#fde0e0}
svg text{font:11px system-ui,sans-serif;fill:#444}
"""


class SignIn(Exception):
    """No valid token: send the browser to the sign-in form."""


async def viewer(request: Request) -> Caller:
    try:
        return await identify(request, await bearer(request))
    except HTTPException as error:
        raise SignIn from error


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    nav = "".join(
        f'<a href="{href}">{label}</a>'
        for href, label in (
            ("/rounds", "Rounds"),
            ("/versions", "Versions"),
            ("/charts", "Charts"),
        )
    )
    return HTMLResponse(
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{escape(title)} · amend"
        f"</title><style>{STYLE}</style></head><body><header><b>amend</b>{nav}</header>"
        f"<main><h1>{escape(title)}</h1>{body}</main></body></html>",
        status_code=status_code,
    )


def state_badge(state: str) -> str:
    return f'<span class="state {escape(state)}">{escape(state)}</span>'


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> str:
    """Cells are HTML already escaped by the caller."""
    if not rows:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# -- sign-in -----------------------------------------------------------------------


@router.get("/login")
async def login_form(error: str = "") -> HTMLResponse:
    note = f'<p style="color:#b00">{escape(error)}</p>' if error else ""
    return page(
        "Sign in",
        f"{note}<form method=post action=/login class=card><p>Paste an API token "
        "(<code>amend token create NAME --role viewer</code>).</p>"
        "<input name=token type=password size=60 autofocus> <button>Sign in</button></form>",
    )


@router.post("/login")
async def login(request: Request) -> Response:
    fields = parse_qs((await request.body()).decode(errors="replace"))
    token = (fields.get("token") or [""])[0].strip()
    if not token or await services(request).ledger.token_holder(token) is None:
        return RedirectResponse("/login?" + urlencode({"error": "unknown token"}), 303)
    response = RedirectResponse("/rounds", 303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/rounds", 307)


async def sign_in(request: Request, _: Exception) -> Response:
    """The exception handler for SignIn: to the form, or 401 for a non-browser."""
    if "text/html" not in request.headers.get("accept", ""):
        return HTMLResponse("sign in at /login", 401, headers={"WWW-Authenticate": "Bearer"})
    return RedirectResponse("/login", 303)


# -- rounds ------------------------------------------------------------------------


@router.get("/rounds")
async def rounds_page(
    request: Request,
    state: RoundState | None = None,
    offset: Annotated[int, Query(ge=0, le=LARGEST_OFFSET)] = 0,
) -> HTMLResponse:
    await viewer(request)
    found = await services(request).dashboards.rounds(
        state=state.value if state else None, limit=PAGE_SIZE, offset=offset
    )
    filters = " ".join(
        f'<a href="/rounds?state={s.value}">{state_badge(s.value)}</a>' for s in RoundState
    )
    rows = [
        [
            f'<a href="/rounds/{escape(r.round_id)}">{escape(r.round_id)}</a>',
            state_badge(r.state),
            f"v{r.base_version}" if r.base_version else "-",
            f'<a href="/versions/{r.result_version}">v{r.result_version}</a>'
            if r.result_version
            else "-",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
        ]
        for r in found.rounds
    ]
    more = ""
    if offset + PAGE_SIZE < found.total:
        query = urlencode(
            {**({"state": state.value} if state else {}), "offset": offset + PAGE_SIZE}
        )
        more = f'<p><a href="/rounds?{query}">older rounds</a></p>'
    return page(
        "Rounds",
        f'<p>Filter: <a href="/rounds">all</a> {filters}</p>'
        f'<p class="muted">{found.total} round(s)</p>'
        + table(["round", "state", "base", "result", "started", "updated"], rows, "No rounds yet.")
        + more,
    )


@router.get("/rounds/{round_id}")
async def round_page(request: Request, round_id: str) -> HTMLResponse:
    await viewer(request)
    ledger = services(request).ledger
    found = await ledger.get_round(round_id)
    if found is None:
        return page("Not found", f"<p>No round {escape(round_id)}.</p>", 404)
    timeline = await ledger.timeline(round_id)
    proposals = await services(request).dashboards.proposals(round_id)
    head = (
        f'<div class="card">State {state_badge(found.state)} · base '
        f"v{found.base_version or '-'} · result "
        f"{'v' + str(found.result_version) if found.result_version else '-'} · started "
        f"{found.created_at:%Y-%m-%d %H:%M} UTC</div>"
    )
    # A round held up by its model says so, and until when (the last `model` move).
    waits = [t for t in timeline if t.entity == "model"]
    if waits and waits[-1].to_state == "waiting" and found.state not in TERMINAL_ROUND_STATES:
        head += f'<div class="card">{escape(waits[-1].reason)}</div>'
    proposal_rows = []
    for p in proposals:
        decided = "<br>".join(
            f"{escape(d.kind)} by {escape(d.reviewer)}"
            + (" <b>(operator override)</b>" if d.override else "")
            + (f"<br>as: <q>{escape(d.text)}</q>" if d.text else "")
            + (f"<br><i>{escape(d.comment)}</i>" if d.comment else "")
            for d in p.decisions
        )
        target = p.target or "new"
        target_html = (
            f'<a href="/principles/{escape(target)}">{escape(target)}</a>'
            if p.target
            else escape(target)
        )
        proposal_rows.append(
            [
                escape(p.proposal_id),
                escape(p.kind),
                target_html,
                state_badge(p.state),
                escape(p.text or "(retire)"),
                decided or '<span class="muted">pending</span>',
            ]
        )
    timeline_rows = [
        [
            str(t.sequence),
            f"{t.at:%Y-%m-%d %H:%M:%S}",
            escape(t.entity),
            f"{escape(t.from_state or '·')} → {state_badge(t.to_state)}",
            escape(t.actor),
            escape(t.reason),
        ]
        for t in timeline
    ]
    return page(
        f"Round {round_id}",
        head
        + "<h2>Proposals</h2>"
        + table(
            ["proposal", "kind", "target", "state", "text", "decisions"],
            proposal_rows,
            "No proposals.",
        )
        + "<h2>Timeline</h2>"
        + table(
            ["#", "at (UTC)", "entity", "transition", "actor", "reason"],
            timeline_rows,
            "No transitions.",
        ),
    )


# -- versions and principles -------------------------------------------------------


@router.get("/versions")
async def versions_page(request: Request) -> HTMLResponse:
    await viewer(request)
    versions = await services(request).dashboards.versions()
    rows = []
    for i, v in enumerate(versions):
        query = urlencode({"from": versions[i - 1].number, "to": v.number}) if i else ""
        diff = (
            f'<a href="/versions/diff?{query}">diff with v{versions[i - 1].number}</a>' if i else ""
        )
        rows.append(
            [
                f'<a href="/versions/{v.number}">v{v.number}</a>',
                str(v.principles),
                f'<a href="/rounds/{escape(v.round_id)}">{escape(v.round_id)}</a>'
                if v.round_id
                else "import",
                f"{v.created_at:%Y-%m-%d %H:%M}",
                diff,
            ]
        )
    return page(
        "Constitution versions",
        table(["version", "principles", "made by", "created", ""], rows, "No versions."),
    )


@router.get("/versions/diff")
async def diff_page(
    request: Request,
    old: Annotated[int, Query(alias="from", ge=1, le=LARGEST_VERSION)],
    new: Annotated[int, Query(alias="to", ge=1, le=LARGEST_VERSION)],
) -> HTMLResponse:
    await viewer(request)
    ledger = services(request).ledger
    a, b = await ledger.get_version(old), await ledger.get_version(new)
    if a is None or b is None:
        return page("Not found", f"<p>No version {old if a is None else new}.</p>", 404)
    side_by_side = difflib.HtmlDiff(wrapcolumn=70).make_table(
        render_markdown(a).splitlines(),
        render_markdown(b).splitlines(),
        fromdesc=f"v{a.number}",
        todesc=f"v{b.number}",
    )
    return page(f"v{a.number} → v{b.number}", f'<div class="diff">{side_by_side}</div>')


@router.get("/versions/{number}")
async def version_page(
    request: Request, number: Annotated[int, Path(ge=1, le=LARGEST_VERSION)]
) -> HTMLResponse:
    await viewer(request)
    version = await services(request).ledger.get_version(number)
    if version is None:
        return page("Not found", f"<p>No version {number}.</p>", 404)
    rows = [
        [
            f'<a href="/principles/{escape(p.id)}">{escape(p.id)}</a>',
            escape(p.title) + (" <i>(protected)</i>" if p.protected else ""),
            escape(p.text),
        ]
        for p in version.principles
    ]
    return page(f"Constitution v{number}", table(["id", "title", "text"], rows, "Empty."))


@router.get("/principles/{principle_id}")
async def lineage_page(request: Request, principle_id: str) -> HTMLResponse:
    await viewer(request)
    entries = await services(request).dashboards.lineage(principle_id)
    if not entries:
        return page("Not found", f"<p>No version has {escape(principle_id)}.</p>", 404)
    rows = [
        [
            f'<a href="/versions/{e.version}">v{e.version}</a>',
            state_badge(e.change),
            escape(e.text or ""),
            f'<a href="/rounds/{escape(e.round_id)}">{escape(e.round_id)}</a>'
            if e.round_id
            else "",
            escape(e.proposal_id or ""),
            escape(", ".join(e.reviewers)),
            escape(", ".join(e.evidence)),
        ]
        for e in entries
    ]
    return page(
        f"Lineage of {principle_id}",
        table(
            ["version", "change", "text", "round", "proposal", "reviewers", "evidence"],
            rows,
            "",
        ),
    )


# -- charts ------------------------------------------------------------------------

W, H, PAD = 640, 240, 40


def line_chart(series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> str:
    """A small SVG line chart; one polyline per series, axes from 0."""
    points = [p for values in series.values() for p in values]
    if not points:
        return '<p class="muted">No data yet.</p>'
    x_max = max(x for x, _ in points) or 1.0
    x_min = min(x for x, _ in points)
    y_max = max(y for _, y in points) or 1.0
    span = (x_max - x_min) or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return (PAD + (x - x_min) / span * (W - 2 * PAD), H - PAD - y / y_max * (H - 2 * PAD))

    colours = ("#2f6fdb", "#d9822b", "#3a9d5d", "#a23b72")
    parts = [
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#999"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>',
        f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="12" y="{PAD - 12}">{escape(y_label)} (max {y_max:.3g})</text>',
    ]
    for (name, values), colour in zip(series.items(), colours, strict=False):
        coords = [at(x, y) for x, y in sorted(values)]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
        for (x, y), (cx, cy) in zip(sorted(values), coords, strict=True):
            parts.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}">'
                f"<title>{escape(name)}: {y:.4g} at {x:g}</title></circle>"
            )
    legend = " ".join(
        f'<span style="color:{c}">■ {escape(n)}</span>'
        for n, c in zip(series, colours, strict=False)
    )
    return (
        f'<svg role="img" width="{W}" height="{H}" viewBox="0 0 {W} {H}">{"".join(parts)}</svg>'
        f"<div>{legend}</div>"
    )


def harm_chart(metrics: list[VersionMetrics]) -> str:
    return line_chart(
        {
            "candidate harm rate": [(m.constitution_version, m.harm_rate) for m in metrics],
            "baseline harm rate": [(m.constitution_version, m.baseline_harm_rate) for m in metrics],
            "over-refusal": [(m.constitution_version, m.overrefusal_rate) for m in metrics],
        },
        "constitution version",
        "rate",
    )


def duration_unit(seconds: float) -> tuple[str, float]:
    """The unit that reads best for a span this long, and its size in seconds."""
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


def latency_chart(points: list[LatencyPoint]) -> str:
    unit, size = duration_unit(max((p.latency_s for p in points), default=0.0))
    return line_chart(
        {f"{unit} to decide": [(i + 1.0, p.latency_s / size) for i, p in enumerate(points)]},
        "decisions, oldest to newest",
        unit,
    )


@router.get("/charts")
async def charts_page(request: Request) -> HTMLResponse:
    await viewer(request)
    dashboards = services(request).dashboards
    metrics = await dashboards.evaluations()
    latency = await dashboards.decision_latency()

    def hours(value: float | None) -> str:
        if value is None:
            return "-"
        unit, size = duration_unit(value)
        return f"{value / size:.3g} {unit}"

    summary = (
        f'<p class="muted">{latency.decisions} decisions · median {hours(latency.p50_s)} · '
        f"p90 {hours(latency.p90_s)} · longest {hours(latency.max_s)}</p>"
    )
    return page(
        "Charts",
        '<h2>Harm rate across versions</h2><div class="card" id="harm">'
        + harm_chart(metrics)
        + '</div><h2>Decision latency</h2><div class="card" id="latency">'
        + summary
        + latency_chart(latency.points)
        + "</div>",
    )
