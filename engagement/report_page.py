"""The analysts' report: one self-contained HTML page of charts over the published gold tables.

``engagement report --output report.html`` writes it. Each chart answers one of DESIGN section
1's questions from the gold tables as published for the report's date (the same views as
``engagement query``), with Plotly (plotly.js is inlined: the page opens without a network).
Each chart has a title, axis titles with units, hover values, and notes when its data is thin
or when rows are missing because their window is not over yet (gold never emits those).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from core import tables
from core.layout import published_dates
from core.storage import Store, as_store
from engagement.query import QueryError, _nothing_published, connect

# DESIGN section 1: figures to sanity-check against.
INDUSTRY_CONVERSION = {("wechat", "invite"): (0.18, 0.25), ("kuaishou", "content"): (0.05, 0.08)}
INDUSTRY_MEAN_LIFETIME_DAYS = {"wechat": 136, "kuaishou": 32}
# Below this many users (groups, attempts, likes) behind a number, the chart says it is thin.
THIN = 20
LARGEST_GROUPS = 8  # per platform
PLATFORM_COLOURS = {"kuaishou": "#ff5000", "wechat": "#07c160"}


@dataclass
class Chart:
    id: str
    title: str
    question: str
    figure: Any  # plotly.graph_objects.Figure
    notes: list[str] = field(default_factory=list)


def _rows(con, sql: str, *params) -> list[dict]:
    cursor = con.execute(sql, list(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _figure(title: str, x_title: str, y_title: str, **layout):
    import plotly.graph_objects as go

    figure = go.Figure()
    layout = {"legend": {"orientation": "h", "y": -0.2}, **layout}
    figure.update_layout(
        title={"text": title}, xaxis_title=x_title, yaxis_title=y_title, template="plotly_white",
        hovermode="closest", margin={"t": 60, "b": 40}, **layout,
    )  # fmt: skip
    return figure


def _thin(labels: list[str], what: str) -> list[str]:
    """A note naming the series that rest on fewer than THIN ``what`` (none when there are none)."""
    return [f"Thin (fewer than {THIN} {what}): {', '.join(labels)}."] if labels else []


def _empty(figure, as_of: date) -> None:
    figure.add_annotation(text=f"no rows as of {as_of}", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)


def retention_charts(con, as_of: date) -> list[Chart]:
    import plotly.graph_objects as go

    rows = _rows(con, "SELECT * FROM retention_cohorts ORDER BY platform, cohort_date, day_offset")
    offsets = list(tables.RETENTION_DAY_OFFSETS)
    charts = []
    for platform in ("kuaishou", "wechat"):
        mine = [r for r in rows if r["platform"] == platform]
        cohorts = sorted({r["cohort_date"] for r in mine})
        cell = {(r["cohort_date"], r["day_offset"]): r for r in mine}
        z = [[cell[(c, n)]["retention_rate"] if (c, n) in cell else None for n in offsets] for c in cohorts]
        custom = [[[cell[(c, n)]["retained_users"], cell[(c, n)]["cohort_users"]] if (c, n) in cell else [None, None] for n in offsets] for c in cohorts]  # fmt: skip
        figure = _figure(f"{platform.capitalize()}: day-N retention by first-join cohort", "day after the cohort's first join",
                         "cohort (date of first join)", yaxis={"autorange": "reversed", "type": "category"})  # fmt: skip
        if cohorts:
            figure.add_trace(go.Heatmap(
                z=z, x=[f"day {n}" for n in offsets], y=[c.isoformat() for c in cohorts], customdata=custom,
                zmin=0, zmax=1, colorscale="Blues", colorbar={"title": {"text": "retained"}, "tickformat": ".0%"},
                hovertemplate="cohort %{y}, %{x}<br>retained %{z:.1%} (%{customdata[0]} of %{customdata[1]} users)<extra></extra>",
                name=platform,
            ))  # fmt: skip
        else:
            _empty(figure, as_of)
        notes = [f"Day N of cohorts later than {as_of} minus N days is empty: that day has not come yet (rows appear once cohort_date + N <= as_of_date)."]
        small = sum(1 for c in cohorts if cell.get((c, offsets[0]), {}).get("cohort_users", THIN) < THIN)
        if small:
            notes.append(f"Thin: {small} of {len(cohorts)} cohorts have fewer than {THIN} users; their rates swing widely.")
        charts.append(Chart(f"retention-{platform}", figure.layout.title.text, "Do members stay?", figure, notes))
    return charts


def conversion_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go

    rows = _rows(con, "SELECT * FROM join_conversion ORDER BY platform, funnel, cohort_date")
    figure = _figure("Join conversion by platform and funnel (7-day window)", "cohort date (invitation or first like)",
                     "conversion rate", yaxis={"tickformat": ".0%", "rangemode": "tozero"})  # fmt: skip
    for (platform, funnel), (low, high) in INDUSTRY_CONVERSION.items():
        figure.add_hrect(
            y0=low, y1=high, fillcolor=PLATFORM_COLOURS[platform], opacity=0.12, line_width=0,
            annotation_text=f"industry: {platform} {funnel} {low:.0%}-{high:.0%}", annotation_position="top left",
        )  # fmt: skip
    series = sorted({(r["platform"], r["funnel"]) for r in rows})
    for platform, funnel in series:
        mine = [r for r in rows if (r["platform"], r["funnel"]) == (platform, funnel)]
        figure.add_trace(go.Scatter(
            x=[r["cohort_date"].isoformat() for r in mine], y=[r["conversion_rate"] for r in mine],
            customdata=[[r["conversions"], r["attempts"]] for r in mine], mode="lines+markers",
            name=f"{platform} {funnel}", line={"color": PLATFORM_COLOURS[platform], "dash": "solid" if funnel == "invite" else "dot"},
            hovertemplate=f"{platform} {funnel}, cohort %{{x}}<br>%{{y:.1%}} (%{{customdata[0]}} of %{{customdata[1]}} attempts)<extra></extra>",
        ))  # fmt: skip
    if not rows:
        _empty(figure, as_of)
    notes = [f"Cohorts after {as_of} minus 7 days are not shown: their 7-day window is not over."]
    thin = sum(1 for r in rows if r["attempts"] < THIN)
    if thin:
        notes.append(f"Thin: {thin} of {len(rows)} points rest on fewer than {THIN} attempts.")
    return Chart("conversion", figure.layout.title.text, "How well does each platform and channel turn reach into members?", figure, notes)


def daily_engagement_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go

    rows = _rows(con, "SELECT * FROM daily_engagement ORDER BY platform, event_type, event_date")
    figure = _figure("Daily likes, shares and joins per platform", "day (reporting time zone)", "events per day")
    for platform in ("kuaishou", "wechat"):
        for kind, dash in (("like", "solid"), ("share", "dash"), ("join", "dot")):
            mine = [r for r in rows if r["platform"] == platform and r["event_type"] == kind]
            if mine:
                figure.add_trace(go.Scatter(
                    x=[r["event_date"].isoformat() for r in mine], y=[r["events"] for r in mine],
                    customdata=[r["users"] for r in mine], mode="lines", name=f"{platform} {kind}s",
                    line={"color": PLATFORM_COLOURS[platform], "dash": dash},
                    hovertemplate=f"{platform} {kind}s on %{{x}}: %{{y}} (%{{customdata}} users)<extra></extra>",
                ))  # fmt: skip
    if not rows:
        _empty(figure, as_of)
    return Chart("daily", figure.layout.title.text, "How much engagement does each platform see?", figure, [])


def survival_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go

    rows = _rows(con, """
        SELECT platform, coalesce(origin_channel, '(unknown)') AS origin_channel,
               sum(groups) AS groups, sum(survived_30d) AS survived
        FROM group_survival GROUP BY ALL ORDER BY platform, origin_channel""")
    figure = _figure("Groups alive 30 days after their first event, by origin channel", "channel of the group's first join",
                     "share of groups alive after 30 days", yaxis={"tickformat": ".0%", "range": [0, 1]}, barmode="group")  # fmt: skip
    for platform in ("kuaishou", "wechat"):
        mine = [r for r in rows if r["platform"] == platform]
        if mine:
            figure.add_trace(go.Bar(
                x=[r["origin_channel"] for r in mine], y=[r["survived"] / r["groups"] for r in mine],
                customdata=[[r["survived"], r["groups"]] for r in mine], name=platform, marker_color=PLATFORM_COLOURS[platform],
                hovertemplate=f"{platform}, %{{x}}: %{{y:.0%}} alive (%{{customdata[0]}} of %{{customdata[1]}} groups)<extra></extra>",
            ))  # fmt: skip
    if not rows:
        _empty(figure, as_of)
    notes = [f"Only groups whose first event is at least 30 days before {as_of} count: younger groups' fate is not known yet."]
    notes += _thin([f"{r['platform']} {r['origin_channel']}" for r in rows if r["groups"] < THIN], "groups")
    return Chart("survival", figure.layout.title.text, "Do groups survive their first 30 days, by the channel that created them?", figure, notes)


def silent_members_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go

    rows = _rows(con, """
        SELECT platform, group_id, members, active_members_7d, silent_members_7d, inactive_members_14d
        FROM group_health WHERE as_of_date = ?
        QUALIFY row_number() OVER (PARTITION BY platform ORDER BY members DESC, group_id) <= ?
        ORDER BY platform, members DESC, group_id""", as_of, LARGEST_GROUPS)
    figure = _figure(f"Silent and inactive members of each platform's {LARGEST_GROUPS} largest groups", "group (platform/group id)",
                     "members", barmode="group", legend={"orientation": "h", "y": -0.45})  # fmt: skip
    labels = [f"{r['platform']}/{r['group_id']}" for r in rows]
    for column, name, colour in (
        ("active_members_7d", "active in the last 7 days", "#4c78a8"),
        ("silent_members_7d", "silent 7 days (warn)", "#f58518"),
        ("inactive_members_14d", "inactive 14 days (clean-up candidates)", "#e45756"),
    ):
        figure.add_trace(go.Bar(
            x=labels, y=[r[column] for r in rows], name=name, marker_color=colour,
            customdata=[r["members"] for r in rows],
            hovertemplate=f"%{{x}}: %{{y}} {name} of %{{customdata}} members<extra></extra>",
        ))  # fmt: skip
    if not rows:
        _empty(figure, as_of)
    notes = [f"As of {as_of}: silent = no event on the platform in the last 7 days; inactive = none in 14 days (a subset of silent)."]
    return Chart("silent", figure.layout.title.text, "Which members went silent?", figure, notes)


def lifetime_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go

    rows = _rows(con, "SELECT * FROM member_lifetime ORDER BY platform, cohort_month")
    figure = _figure("Member lifetime by first-join month", "month of the member's first join", "days from first join to last event",
                     barmode="group", scattermode="group", xaxis={"type": "category"})  # fmt: skip
    for platform in ("kuaishou", "wechat"):
        mine = [r for r in rows if r["platform"] == platform]
        if not mine:
            continue
        months = [r["cohort_month"].isoformat()[:7] for r in mine]
        figure.add_trace(go.Bar(
            x=months, y=[r["avg_lifetime_days"] for r in mine], customdata=[r["users"] for r in mine],
            name=f"{platform} mean", marker_color=PLATFORM_COLOURS[platform], offsetgroup=platform,
            hovertemplate=f"{platform}, cohort %{{x}}: mean %{{y:.1f}} days over %{{customdata}} members<extra></extra>",
        ))  # fmt: skip
        figure.add_trace(go.Scatter(
            x=months, y=[r["median_lifetime_days"] for r in mine], mode="markers", name=f"{platform} median", offsetgroup=platform,
            marker={"color": PLATFORM_COLOURS[platform], "symbol": "diamond", "size": 10, "line": {"width": 1, "color": "black"}},
            hovertemplate=f"{platform}, cohort %{{x}}: median %{{y:.1f}} days<extra></extra>",
        ))  # fmt: skip
    for platform, days in INDUSTRY_MEAN_LIFETIME_DAYS.items():
        figure.add_hline(y=days, line_dash="dash", line_color=PLATFORM_COLOURS[platform],
                         annotation_text=f"industry mean, {platform}: ~{days} days")  # fmt: skip
    if not rows:
        _empty(figure, as_of)
    notes = [f"Lifetimes end at {as_of} at the latest: members still active then will live longer, so recent months read low."]
    notes += _thin([f"{r['platform']} {r['cohort_month']:%Y-%m}" for r in rows if r["users"] < THIN], "members")
    return Chart("lifetime", figure.layout.title.text, "How long do members stay?", figure, notes)


def propagation_chart(con, as_of: date) -> Chart:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = _rows(con, "SELECT * FROM cross_platform_propagation ORDER BY event_date")
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.14,
        subplot_titles=("share of likes re-shared on WeChat within 24 hours", "time from the like to the earliest share"),
    )  # fmt: skip
    figure.update_layout(title={"text": "Kuaishou likes re-shared on WeChat within 24 hours"}, template="plotly_white",
                         legend={"orientation": "h", "y": -0.2}, margin={"t": 60, "b": 40})  # fmt: skip
    days = [r["event_date"].isoformat() for r in rows]
    figure.add_trace(go.Scatter(
        x=days, y=[r["propagation_rate"] for r in rows], customdata=[[r["propagated"], r["likes"]] for r in rows],
        mode="lines+markers", name="propagation rate", line={"color": "#54a24b"},
        hovertemplate="%{x}: %{y:.1%} of likes (%{customdata[0]} of %{customdata[1]})<extra></extra>",
    ), row=1, col=1)  # fmt: skip
    for column, name, dash in (("latency_p50_s", "p50", "solid"), ("latency_p90_s", "p90", "dash"), ("latency_p99_s", "p99", "dot")):
        figure.add_trace(go.Scatter(
            x=days, y=[r[column] for r in rows], mode="lines", name=f"latency {name}", line={"color": "#b279a2", "dash": dash},
            hovertemplate=f"%{{x}}: {name} %{{y:.0f}} s<extra></extra>",
        ), row=2, col=1)  # fmt: skip
    figure.update_yaxes(title_text="likes propagated", tickformat=".0%", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(title_text="seconds (log scale)", type="log", row=2, col=1)
    figure.update_xaxes(title_text="day of the like (reporting time zone)", row=2, col=1)
    if not rows:
        _empty(figure, as_of)
    notes = [f"A day appears once its likes' 24-hour window is over: the last day shown is {as_of} minus 1 at most. "
             "Likes counted are those of persons with a linked WeChat account."]  # fmt: skip
    thin = sum(1 for r in rows if r["likes"] < THIN)
    if thin:
        notes.append(f"Thin: {thin} of {len(rows)} days have fewer than {THIN} likes.")
    return Chart("propagation", figure.layout.title.text, "How fast does engagement jump platforms?", figure, notes)


def build_charts(warehouse: Path | Store, *, as_of: date | None = None) -> tuple[date, list[Chart]]:
    """The report's date (the newest publication on or before ``as_of``) and its charts."""
    store = as_store(warehouse)
    dates = [d for d in published_dates(store) if as_of is None or d <= as_of]
    if not dates:
        raise QueryError(_nothing_published(as_of))
    shown = dates[-1]
    con = connect(store, as_of=shown)
    try:
        charts = [
            conversion_chart(con, shown),
            *retention_charts(con, shown),
            daily_engagement_chart(con, shown),
            survival_chart(con, shown),
            silent_members_chart(con, shown),
            lifetime_chart(con, shown),
            propagation_chart(con, shown),
        ]
    finally:
        con.close()
    return shown, charts


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
section { margin: 2.5rem 0; } .question { color: #555; font-style: italic; margin: 0.2rem 0; }
.note { background: #fff8e1; border-left: 4px solid #f5b400; padding: 0.4rem 0.8rem; margin: 0.3rem 0; font-size: 0.92rem; }
.chart { height: 480px; } nav li { margin: 0.15rem 0; }
"""


def render_page(as_of: date, charts: list[Chart]) -> str:
    """The whole page: plotly.js inlined once, then one section per chart."""
    from plotly.offline import get_plotlyjs

    sections = []
    for chart in charts:
        div = chart.figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=chart.id,
            config={"displaylogo": False, "responsive": True}, default_height="480px",
        )  # fmt: skip
        notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in chart.notes)
        sections.append(
            f'<section id="section-{chart.id}"><h2>{html.escape(chart.title)}</h2>'
            f'<p class="question">{html.escape(chart.question)}</p>{notes}<div class="chart">{div}</div></section>'
        )
    contents = "".join(f'<li><a href="#section-{c.id}">{html.escape(c.title)}</a></li>' for c in charts)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Cross-platform engagement as of {as_of}</title><style>{_STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>Cross-platform engagement</h1>"
        f'<p class="meta">Gold tables as published for {as_of} (generated {generated}). '
        "Dates are in the reporting time zone. Hover over any point for its numbers; "
        "`engagement tables NAME` explains each table's columns.</p>"
        f"<nav><ul>{contents}</ul></nav>{''.join(sections)}</body></html>"
    )


def write_report(warehouse: Path | Store, output: Path, *, as_of: date | None = None) -> tuple[date, list[Chart]]:
    """Write the report page to ``output``; return its date and charts."""
    shown, charts = build_charts(warehouse, as_of=as_of)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_page(shown, charts), encoding="utf-8")
    return shown, charts
