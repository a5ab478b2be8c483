"""Built-in pages: the rounds, a round's whole story, constitution versions and
their word-level differences, principle lineage, and charts.

Server-rendered from Jinja2 templates (`gateway/templates`, autoescaped, so
text from a model, a reviewer or an operator is never markup); forms are
parsed by python-multipart. Stylesheet, scripts and Plotly.js are the
gateway's own files (`gateway/static`, and Plotly.js from the `plotly` wheel):
the pages work offline, and the figures are readable with JavaScript off.

Pages read the same queries as the dashboard API and need the same viewer
token; a browser signs in once on /login and carries it in an HttpOnly cookie.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from importlib.metadata import version as package_version
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import HTTPException
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from constitution import RoundState
from constitution.wording import principle_changes
from gateway.auth import COOKIE, Caller, bearer, identify
from gateway.charts import dashboard_charts, duration_unit
from gateway.deps import services
from gateway.round_view import build_round_view, person
from ledger.dashboards import LARGEST_OFFSET, LARGEST_VERSION

# The pages' routes carry this tag, so an error handler can answer a page in HTML.
PAGES_TAG = "pages"
router = APIRouter(include_in_schema=False, tags=[PAGES_TAG])

PAGE_SIZE = 50
HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
# Plotly.js as the plotly wheel ships it; its version is in the URL, so a
# browser may keep it for as long as it likes.
PLOTLY_VERSION = package_version("plotly")
PLOTLY_JS = f"/static/vendor/plotly-{PLOTLY_VERSION}.min.js"
_PLOTLY_FILE = Path(str(files("plotly") / "package_data" / "plotly.min.js"))


def _when(value: datetime | None, seconds: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M{':%S' if seconds else ''}}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    unit, size = duration_unit(value)
    return f"{value / size:.3g} {unit}"


templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is text unless a template says otherwise
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
)
templates.env.filters.update(when=_when, pct=_pct, seconds=_seconds, person=person)


class SignIn(Exception):
    """No valid token: send the browser to the sign-in form."""


async def viewer(request: Request) -> Caller:
    try:
        return await identify(request, await bearer(request))
    except HTTPException as error:
        raise SignIn from error


def render(
    request: Request, template: str, title: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """A page from its template; every page has a title and knows whether it is signed in."""
    return templates.TemplateResponse(
        request,
        template,
        {"title": title, "signed_in": COOKIE in request.cookies, **context},
        status_code=status_code,
    )


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "not_found.html", "Not found", 404, message=message)


# -- sign-in -----------------------------------------------------------------------


def _local(target: str) -> str:
    """Where to go after signing in: a path on this gateway, never another site."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/rounds"


@router.get("/login")
async def login_form(request: Request, error: str = "", next: str = "/rounds") -> HTMLResponse:
    return render(request, "login.html", "Sign in", error=error, next=_local(next))


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/rounds",
) -> Response:
    token = token.strip()
    if not token or await services(request).ledger.token_holder(token) is None:
        query = urlencode({"error": "unknown token", "next": _local(next)})
        return RedirectResponse(f"/login?{query}", 303)
    response = RedirectResponse(_local(next), 303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, httponly=True, samesite="strict")
    return response


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/rounds", 307)


async def sign_in(request: Request, _: Exception) -> Response:
    """The exception handler for SignIn: to the form (and back), or 401 for a non-browser."""
    if "text/html" not in request.headers.get("accept", ""):
        return HTMLResponse("sign in at /login", 401, headers={"WWW-Authenticate": "Bearer"})
    back = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": back}), 303)


# -- static files that come from packages ------------------------------------------


@router.get(PLOTLY_JS)
async def plotly_js() -> FileResponse:
    return FileResponse(
        _PLOTLY_FILE,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


# ReDoc's bundle (from the fastapi-offline wheel) draws Redocly's logo from a
# CDN in its side menu, whatever its options say; the gateway serves the bundle
# with that one address pointing at its own icon, so /redoc stays offline.
REDOC_CDN_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS = f"/static/vendor/redoc-{package_version('fastapi-offline')}.standalone.js"
_REDOC_FILE = Path(str(files("fastapi_offline") / "static" / "redoc.standalone.js"))


@lru_cache(maxsize=1)
def _redoc_bundle() -> bytes:
    return _REDOC_FILE.read_bytes().replace(REDOC_CDN_LOGO.encode(), b"/static/favicon.svg")


@router.get(REDOC_JS)
async def redoc_js() -> Response:
    return Response(
        _redoc_bundle(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url=request.app.openapi_url,
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=REDOC_JS,
        redoc_favicon_url="/static/favicon.svg",
        with_google_fonts=False,
    )


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
    older = None
    if offset + PAGE_SIZE < found.total:
        older = urlencode(
            {**({"state": state.value} if state else {}), "offset": offset + PAGE_SIZE}
        )
    return render(
        request,
        "rounds.html",
        "Rounds",
        page=found,
        states=[s.value for s in RoundState],
        older=older,
    )


@router.get("/rounds/{round_id}")
async def round_page(request: Request, round_id: str) -> HTMLResponse:
    await viewer(request)
    view = await build_round_view(services(request), round_id)
    if view is None:
        return not_found(request, f"No round {round_id}.")
    return render(
        request,
        "round.html",
        f"Round {round_id}",
        view=view,
        refresh_s=services(request).config.page_refresh_s,
    )


def _stored_under(root: Path, location: str) -> Path | None:
    """The file at `location` if it is one inside `root`, never a path that escapes it."""
    path = Path(location).resolve()
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


@router.get("/rounds/{round_id}/dataset")
async def dataset_file(request: Request, round_id: str) -> Response:
    """The round's dataset JSONL, when the gateway can reach its artifact store."""
    await viewer(request)
    dataset = await services(request).ledger.dataset(round_id)
    if dataset is None:
        return not_found(request, f"Round {round_id} has no dataset.")
    if dataset.uri.startswith(("https://", "http://")):
        return RedirectResponse(dataset.uri, 307)
    root = services(request).config.artifacts_root
    if dataset.uri.startswith("file://") and root is not None:
        path = _stored_under(root, dataset.uri.removeprefix("file://"))
        if path is not None:
            return FileResponse(
                path,
                media_type="application/jsonl",
                filename=f"{round_id}-{dataset.sha256[:12]}.jsonl",
            )
    return not_found(
        request,
        f"The dataset {dataset.uri} is not in an artifact store this gateway can read "
        "(AMEND_ARTIFACTS_DIR).",
    )


# -- versions and principles -------------------------------------------------------


@router.get("/versions")
async def versions_page(request: Request) -> HTMLResponse:
    await viewer(request)
    versions = await services(request).dashboards.versions()
    return render(request, "versions.html", "Constitution versions", versions=versions)


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
        return not_found(request, f"No version {old if a is None else new}.")
    changes = principle_changes(a, b)
    tally: dict[str, int] = {}
    for c in changes:
        tally[c.change] = tally.get(c.change, 0) + 1
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(tally.items()))
    return render(
        request,
        "diff.html",
        f"v{a.number} → v{b.number}",
        old=a,
        new=b,
        changes=changes,
        counts=counts,
    )


@router.get("/versions/{number}")
async def version_page(
    request: Request, number: Annotated[int, PathParam(ge=1, le=LARGEST_VERSION)]
) -> HTMLResponse:
    await viewer(request)
    version = await services(request).ledger.get_version(number)
    if version is None:
        return not_found(request, f"No version {number}.")
    return render(request, "version.html", f"Constitution v{number}", version=version)


@router.get("/principles/{principle_id}")
async def lineage_page(request: Request, principle_id: str) -> HTMLResponse:
    await viewer(request)
    entries = await services(request).dashboards.lineage(principle_id)
    if not entries:
        return not_found(request, f"No version has {principle_id}.")
    return render(request, "lineage.html", f"Lineage of {principle_id}", entries=entries)


# -- charts ------------------------------------------------------------------------


@router.get("/charts")
async def charts_page(request: Request) -> HTMLResponse:
    await viewer(request)
    dashboards = services(request).dashboards
    metrics = await dashboards.evaluations()
    latency = await dashboards.decision_latency()
    trend = await dashboards.trend(services(request).config.reference_model)
    return render(
        request,
        "charts.html",
        "Charts",
        charts=dashboard_charts(metrics, latency, trend),
        latency=latency,
        trend=trend,
        plotly_js=PLOTLY_JS,
    )
