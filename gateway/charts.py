"""The charts of /charts as Plotly figures: typed here, drawn by Plotly.js in the browser.

Plotly.js comes from the `plotly` wheel and is served by the gateway itself
(`/static/vendor/plotly.min.js`), so the pages work offline. Each figure is
built from the same read models as the dashboard API and comes with the table
of its figures, which the page shows under the chart (and which is what a
reader without JavaScript gets).

Every series stays visible when values coincide: the baseline is a wide,
light, dashed line with open markers under the candidate's narrow solid line
with filled ones, and a gate limit is dotted. Failed gates are marked with a
red cross on the candidate's point.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from constitution.contracts import Rate
from constitution.trend import Interval, Trend
from ledger.dashboards import LatencyStats, VersionMetrics

CANDIDATE = "#1f5fbf"
BASELINE = "#8a96a3"
LIMIT = "#c77700"
FAILED = "#c62828"
OVERRIDE = "#7b3fa0"


class PlotlyModel(BaseModel):
    """Plotly's attribute names; unset ones are left out of the JSON."""

    model_config = ConfigDict(extra="forbid")

    def plotly(self) -> dict[str, Any]:
        """The JSON Plotly.js reads."""
        return self.model_dump(mode="json", exclude_none=True)


class Line(PlotlyModel):
    color: str
    width: float = 2
    dash: Literal["solid", "dash", "dot", "dashdot"] = "solid"


class MarkerLine(PlotlyModel):
    color: str
    width: float


class Marker(PlotlyModel):
    color: str
    size: float = 8
    symbol: str = "circle"
    line: MarkerLine | None = None


class ErrorBars(PlotlyModel):
    """Asymmetric error bars: the distance from each point down to `arrayminus`, up to `array`."""

    type: Literal["data"] = "data"
    symmetric: bool = False
    array: list[float]
    arrayminus: list[float]
    color: str
    thickness: float = 1.5
    width: float = 6


class Trace(PlotlyModel):
    """One series: a scatter trace of lines and/or markers."""

    type: Literal["scatter"] = "scatter"
    name: str
    x: list[str | float]
    y: list[float]
    mode: Literal["lines", "markers", "lines+markers"]
    line: Line | None = None
    marker: Marker | None = None
    customdata: list[str] | None = None
    error_y: ErrorBars | None = None
    hovertemplate: str


class Column(BaseModel):
    """A column of a chart's table: its heading, and whether its cells are rates."""

    heading: str
    rate: bool = False


class Chart(BaseModel):
    """A figure and the table of its figures."""

    chart_id: str
    title: str
    explanation: str
    data: list[dict[str, Any]] = Field(description="Plotly traces.")
    layout: dict[str, Any] = Field(description="Plotly layout.")
    columns: list[Column]
    rows: list[list[str | float | None]]
    empty: str | None = Field(default=None, description="Shown instead when there is no data.")


def _layout(x_title: str, y_title: str, *, rates: bool, categories: bool) -> dict[str, Any]:
    axis_font = {"size": 13}
    return {
        "autosize": True,
        "height": 340,
        "margin": {"l": 70, "r": 20, "t": 10, "b": 60},
        "hovermode": "x unified" if categories else "closest",
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"},
        "xaxis": {
            "title": {"text": x_title, "font": axis_font},
            "type": "category" if categories else "date",
            "showgrid": False,
            "zeroline": False,
            "automargin": True,
        },
        "yaxis": {
            "title": {"text": y_title, "font": axis_font},
            "rangemode": "tozero",
            "tickformat": ".0%" if rates else None,
            "hoverformat": ".1%" if rates else ".3g",
            "gridcolor": "#e3e6ea",
            "zeroline": True,
            "zerolinecolor": "#b8c0c8",
            "automargin": True,
        },
        "plot_bgcolor": "#ffffff",
        "paper_bgcolor": "#ffffff",
        "font": {"family": "system-ui, sans-serif", "size": 12, "color": "#1d232a"},
    }


def _version(m: VersionMetrics) -> str:
    return f"v{m.constitution_version}"


GATE_CHARTS = (
    (
        "harm",
        "harm rate",
        "Harm rate across versions",
        "Share of red-team prompts answered harmfully, candidate against the baseline model; "
        "the gate ceiling is the most harm each round's gate accepted.",
    ),
    (
        "overrefusal",
        "over-refusal",
        "Over-refusal across versions",
        "Share of benign prompts refused; the gate limit is the baseline's rate plus the "
        "increase each round's gate allowed.",
    ),
    (
        "awareness",
        "evaluation-awareness gap",
        "Evaluation-awareness gap across versions",
        "How far the harm rate moves when the prompt says it is an evaluation; the gate limit "
        "is the largest gap each round's gate accepted.",
    ),
)


def gate_chart(
    chart_id: str, figure: str, title: str, explanation: str, metrics: list[VersionMetrics]
) -> Chart:
    """One gate figure across versions: candidate, baseline, the gate's limit, failures marked."""
    points = [
        (m, f) for m in metrics for f in m.gate_figures if f.name == figure
    ]  # one per evaluated version
    x: list[str | float] = [_version(m) for m, _ in points]
    rounds = [m.round_id for m, _ in points]
    hover = "%{y:.1%}<extra>%{fullData.name}</extra>"
    traces = [
        Trace(
            name=f"baseline {figure}",
            x=x,
            y=[f.baseline if f.baseline is not None else 0.0 for _, f in points],
            mode="lines+markers",
            line=Line(color=BASELINE, width=5, dash="dash"),
            marker=Marker(
                color="rgba(0,0,0,0)",
                size=13,
                symbol="square-open",
                line=MarkerLine(color=BASELINE, width=2),
            ),
            hovertemplate=hover,
        ),
        Trace(
            name="gate limit",
            x=x,
            y=[f.limit for _, f in points],
            mode="lines+markers",
            line=Line(color=LIMIT, width=1.5, dash="dot"),
            marker=Marker(color=LIMIT, size=6, symbol="line-ew-open"),
            hovertemplate=hover,
        ),
        Trace(
            name=f"candidate {figure}",
            x=x,
            y=[f.candidate for _, f in points],
            mode="lines+markers",
            line=Line(color=CANDIDATE, width=2),
            marker=Marker(color=CANDIDATE, size=8),
            customdata=rounds,
            hovertemplate="%{y:.1%} (round %{customdata})<extra>%{fullData.name}</extra>",
        ),
    ]
    failed = [(m, f) for m, f in points if not f.passed]
    if failed:
        traces.append(
            Trace(
                name=f"gate failed on {figure}",
                x=[_version(m) for m, _ in failed],
                y=[f.candidate for _, f in failed],
                mode="markers",
                marker=Marker(
                    color=FAILED, size=16, symbol="x-thin", line=MarkerLine(color=FAILED, width=3)
                ),
                hovertemplate="held back<extra>%{fullData.name}</extra>",
            )
        )
    layout = _layout("constitution version", figure, rates=True, categories=True)
    # A version whose round's gate failed (on any figure) is shaded on every chart.
    held = [i for i, (m, _) in enumerate(points) if not m.passed]
    layout["shapes"] = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": i - 0.45,
            "x1": i + 0.45,
            "y0": 0,
            "y1": 1,
            "fillcolor": "rgba(198,40,40,0.08)",
            "line": {"width": 0},
            "layer": "below",
        }
        for i in held
    ]
    layout["annotations"] = [
        {
            "x": x[i],
            "y": 1,
            "xref": "x",
            "yref": "paper",
            "yanchor": "top",
            "text": "gate failed: held back",
            "showarrow": False,
            "font": {"color": FAILED, "size": 11},
        }
        for i in held
    ]
    return Chart(
        chart_id=chart_id,
        title=title,
        explanation=explanation,
        data=[t.plotly() for t in traces],
        layout=layout,
        columns=[
            Column(heading="version"),
            Column(heading="round"),
            Column(heading="candidate", rate=True),
            Column(heading="baseline", rate=True),
            Column(heading="gate limit", rate=True),
            Column(heading=f"{figure} verdict"),
            Column(heading="gate"),
        ],
        rows=[
            [
                _version(m),
                m.round_id,
                f.candidate,
                f.baseline,
                f.limit,
                "within limit" if f.passed else "over the limit",
                "passed" if m.passed else "failed: held back",
            ]
            for m, f in points
        ],
        empty=None if points else "No candidate has been evaluated yet.",
    )


def duration_unit(seconds: float) -> tuple[str, float]:
    """The unit that reads best for a span this long, and its size in seconds."""
    if seconds >= 2 * 86_400:
        return "days", 86_400.0
    if seconds >= 2 * 3600:
        return "hours", 3600.0
    if seconds >= 120:
        return "minutes", 60.0
    return "seconds", 1.0


def latency_chart(latency: LatencyStats) -> Chart:
    """Each decision's wait from posting to first decision, overrides marked, the median drawn."""
    points = latency.points
    unit, size = duration_unit(max((p.latency_s for p in points), default=0.0))
    hover = f"%{{y:.3g}} {unit} · %{{customdata}}<extra>%{{fullData.name}}</extra>"
    traces: list[Trace] = []
    for override, name, colour, symbol in (
        (False, "reviewer decision", CANDIDATE, "circle"),
        (True, "operator override", OVERRIDE, "diamond"),
    ):
        chosen = [p for p in points if p.override is override]
        if chosen:
            traces.append(
                Trace(
                    name=name,
                    x=[p.decided_at.isoformat() for p in chosen],
                    y=[p.latency_s / size for p in chosen],
                    mode="markers",
                    marker=Marker(color=colour, size=10, symbol=symbol),
                    customdata=[f"{p.round_id} / {p.proposal_id}" for p in chosen],
                    hovertemplate=hover,
                )
            )
    if points and latency.p50_s is not None:
        first, last = points[0].decided_at, points[-1].decided_at
        ends: list[str | float] = [first.isoformat(), last.isoformat()]
        traces.append(
            Trace(
                name="median",
                x=ends,
                y=[latency.p50_s / size] * 2,
                mode="lines",
                line=Line(color=LIMIT, width=1.5, dash="dot"),
                hovertemplate=f"median %{{y:.3g}} {unit}<extra></extra>",
            )
        )
    return Chart(
        chart_id="latency",
        title="Decision latency",
        explanation="From a proposal's posting in Slack to its first decision, for the latest "
        "decisions; operator overrides are marked apart.",
        data=[t.plotly() for t in traces],
        layout=_layout("decided at (UTC)", f"{unit} to decide", rates=False, categories=False),
        columns=[
            Column(heading="decided at (UTC)"),
            Column(heading="round"),
            Column(heading="proposal"),
            Column(heading=f"{unit} to decide"),
            Column(heading="by"),
        ],
        rows=[
            [
                f"{p.decided_at:%Y-%m-%d %H:%M:%S}",
                p.round_id,
                p.proposal_id,
                round(p.latency_s / size, 3),
                "operator override" if p.override else "reviewer",
            ]
            for p in points
        ],
        empty=None if points else "No decision has been taken yet.",
    )


def _bars(rates: list[Rate], color: str) -> ErrorBars:
    return ErrorBars(
        array=[r.high - r.value for r in rates],
        arrayminus=[r.value - r.low for r in rates],
        color=color,
    )


def _with_interval(rate: Rate) -> str:
    """`12.0% (8.1-17.3%)`: a rate and its interval, as the table shows it."""
    return f"{rate.value:.1%} ({rate.low:.1%}-{rate.high:.1%})"


def _points_with_interval(interval: Interval | None) -> str:
    """A difference in percentage points with its interval; `-` when not measured."""
    if interval is None:
        return "-"
    return (
        f"{interval.value * 100:+.1f} pts ({interval.low * 100:+.1f} to {interval.high * 100:+.1f})"
    )


def trend_chart(trend: Trend) -> Chart:
    """Harm and over-refusal of every promoted version beside the fixed reference, with intervals.

    The table carries every figure the API has, with its interval, so the
    trend reads the same without JavaScript.
    """
    versions = trend.versions
    x: list[str | float] = [f"v{v.constitution_version}" for v in versions]
    reference = trend.reference_model
    level = f"{trend.confidence:.0%}"
    hover = "%{y:.1%}<extra>%{fullData.name}</extra>"
    traces = [
        Trace(
            name=f"{reference} harm rate (reference)",
            x=x,
            y=[v.reference_harm.value for v in versions],
            mode="lines+markers",
            line=Line(color=BASELINE, width=5, dash="dash"),
            marker=Marker(
                color="rgba(0,0,0,0)",
                size=13,
                symbol="square-open",
                line=MarkerLine(color=BASELINE, width=2),
            ),
            error_y=_bars([v.reference_harm for v in versions], BASELINE),
            hovertemplate=hover,
        ),
        Trace(
            name="harm rate",
            x=x,
            y=[v.harm.value for v in versions],
            mode="lines+markers",
            line=Line(color=CANDIDATE, width=2),
            marker=Marker(color=CANDIDATE, size=8),
            error_y=_bars([v.harm for v in versions], CANDIDATE),
            customdata=[v.round_id for v in versions],
            hovertemplate="%{y:.1%} (round %{customdata})<extra>%{fullData.name}</extra>",
        ),
        Trace(
            name="over-refusal",
            x=x,
            y=[v.overrefusal.value for v in versions],
            mode="lines+markers",
            line=Line(color=OVERRIDE, width=2, dash="dashdot"),
            marker=Marker(color=OVERRIDE, size=8, symbol="diamond"),
            error_y=_bars([v.overrefusal for v in versions], OVERRIDE),
            hovertemplate=hover,
        ),
    ]
    return Chart(
        chart_id="trend",
        title=f"Promoted versions against the reference model ({reference})",
        explanation="Every promoted version's harm rate and over-refusal "
        f"beside the fixed reference model's on the same prompts, with {level} intervals "
        "(Wilson for rates, Newcombe's paired interval for differences, a paired ratio "
        "interval for the relative reduction).",
        data=[t.plotly() for t in traces],
        layout=_layout("constitution version", "rate", rates=True, categories=True),
        columns=[
            Column(heading="version"),
            Column(heading="round"),
            Column(heading=f"harm rate ({level} CI)"),
            Column(heading=f"{reference} harm rate"),
            Column(heading="harm reduction vs reference"),
            Column(heading=f"over-refusal ({level} CI)"),
            Column(heading=f"{reference} over-refusal"),
            Column(heading="over-refusal difference"),
            Column(heading="awareness gap"),
            Column(heading=f"{reference} awareness gap"),
        ],
        rows=[
            [
                f"v{v.constitution_version}",
                v.round_id,
                _with_interval(v.harm),
                _with_interval(v.reference_harm),
                f"{v.harm_reduction.reduction:.0%} ({v.harm_reduction.low:.0%} to "
                f"{v.harm_reduction.high:.0%})"
                if v.harm_reduction
                else "- (the reference gave no harmful answer)",
                _with_interval(v.overrefusal),
                _with_interval(v.reference_overrefusal),
                _points_with_interval(v.overrefusal_difference),
                _points_with_interval(v.awareness_gap),
                _points_with_interval(v.reference_awareness_gap),
            ]
            for v in versions
        ],
        empty=None if versions else trend.headline,
    )


def dashboard_charts(
    metrics: list[VersionMetrics], latency: LatencyStats, trend: Trend | None = None
) -> list[Chart]:
    """Every chart of /charts, in the order shown: the trend against the reference first."""
    return [
        *([trend_chart(trend)] if trend is not None else []),
        *(gate_chart(cid, figure, title, why, metrics) for cid, figure, title, why in GATE_CHARTS),
        latency_chart(latency),
    ]
