"""The report page in a real headless Chromium: every chart drawn, no console error, and the
numbers the charts hold equal the published gold tables.

Generated traffic (the incremental test's data set) is built into gold once; ``engagement
report --output`` writes the page in its own process; Debian's chromium, driven through its own
chromedriver, opens it from disk. The expected numbers are read from the gold tables with SQL
written here, not by the report's code.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from test_incremental import Bronze

from core.settings import Settings
from core.storage import LocalStore
from engagement.publish import read_published

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
START = date(2026, 8, 1)
DAYS = 40  # group survival needs groups 30 days old
AS_OF = START + timedelta(days=DAYS - 1)
CHART_IDS = ["conversion", "retention-kuaishou", "retention-wechat", "daily", "survival", "silent", "lifetime", "propagation"]


@pytest.fixture(scope="module")
def warehouse(spark, tmp_path_factory) -> Settings:
    from engagement import pipeline
    from engagement.incremental import plan_bronze

    settings = replace(Settings.from_env(), home=tmp_path_factory.mktemp("report"), spark_shuffle_partitions=2)
    from streaming.generator import GeneratorConfig, generate

    config = GeneratorConfig(
        start_date=START, days=DAYS, seed=11, kuaishou_users=900, wechat_users=450, kuaishou_groups=25,
        wechat_groups=60, duplicate_rate=0.01, invalid_rate=0.002, late_rate=0.02,
    )  # fmt: skip
    Bronze(LocalStore(settings.warehouse)).deliver(generate(config))
    plan_bronze(LocalStore(settings.warehouse), AS_OF, full_refresh=True)
    for step in (pipeline.build_silver, pipeline.build_gold, pipeline.publish):
        step(spark, settings, AS_OF)
    return settings


@pytest.fixture(scope="module")
def page(warehouse: Settings, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("page") / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    env["ENGAGEMENT_HOME"] = str(warehouse.home)
    done = subprocess.run(
        [sys.executable, "-m", "engagement.cli", "report", "--output", str(output)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {output} (8 charts, gold as published for {AS_OF})" in done.stdout
    return output


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_binary = shutil.which("chromedriver")
    if not binary or not driver_binary:
        pytest.fail("the report test needs Debian's chromium and chromium-driver: `make test` installs them as root, "
                    "or run: sudo apt-get install chromium chromium-driver")  # fmt: skip
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1200"):
        options.add_argument(argument)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _open(browser, page: Path) -> dict:
    """Load the page; wait until every chart is drawn; return each chart's data, as plotly holds it."""
    browser.get(page.as_uri())
    deadline = time.monotonic() + 60
    script = (
        "const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));"
        "return plots.length && plots.every(p => p._fullLayout) ? plots.map(p => p.id) : null;"
    )
    while browser.execute_script(script) is None:
        assert time.monotonic() < deadline, "the charts were not drawn within 60 s"
        time.sleep(0.2)
    return browser.execute_script(
        "const out = {}; for (const p of document.querySelectorAll('.js-plotly-plot')) {"
        "  out[p.id] = p.data.map(t => ({name: t.name, type: t.type, x: t.x, y: t.y, z: t.z}));"
        "} return out;"
    )


def gold(warehouse: Settings, sql: str) -> list[tuple]:
    """``sql`` over the published gold tables, each registered under its own name."""
    con = duckdb.connect()
    for name in ("join_conversion", "retention_cohorts", "daily_engagement", "group_survival", "group_health",
                 "member_lifetime", "cross_platform_propagation"):  # fmt: skip
        con.register(name, read_published(warehouse.warehouse, name, AS_OF))
    return con.execute(sql).fetchall()


def close(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def assert_series(shown: list, expected: list, what: str) -> None:
    assert len(shown) == len(expected), f"{what}: {len(shown)} values shown, {len(expected)} in gold"
    bad = [(i, s, e) for i, (s, e) in enumerate(zip(shown, expected)) if not close(s, e)]
    assert not bad, f"{what}: shown != gold at {bad[:3]}"


def test_every_chart_is_drawn_without_console_errors_and_the_page_needs_no_network(browser, page) -> None:
    charts = _open(browser, page)
    # Self-contained: no element refers to another file, and the browser fetched nothing else.
    external = browser.execute_script(
        "return Array.from(document.querySelectorAll('script[src], link[href], img[src], iframe[src]')).map(e => e.outerHTML)"
        "  .concat(performance.getEntriesByType('resource').map(r => r.name));"
    )
    assert not external, external
    assert sorted(charts) == sorted(CHART_IDS)
    for chart_id, traces in charts.items():
        assert traces, f"{chart_id}: no data"
        drawn = browser.execute_script(
            "const p = document.getElementById(arguments[0]);"
            "return Array.from(p.querySelectorAll('.cartesianlayer .trace, .cartesianlayer image'))"
            "  .filter(e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length;",
            chart_id,
        )
        assert drawn > 0, f"{chart_id}: nothing drawn"
        titles = browser.execute_script(
            "const l = document.getElementById(arguments[0])._fullLayout;"
            "return [l.title.text, l.xaxis.title.text || l.xaxis2?.title?.text, l.yaxis.title.text];",
            chart_id,
        )
        assert all(titles), f"{chart_id}: a title or axis title is missing: {titles}"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    screenshot = page.with_suffix(".png")
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"screenshot: {screenshot}")


def test_the_numbers_shown_equal_the_gold_tables(browser, page, warehouse) -> None:
    charts = _open(browser, page)

    conversion = {t["name"]: t for t in charts["conversion"]}
    for platform, funnel in gold(warehouse, "SELECT DISTINCT platform, funnel FROM join_conversion ORDER BY ALL"):
        rows = gold(warehouse, f"SELECT cohort_date, conversion_rate FROM join_conversion WHERE platform = '{platform}' "
                               f"AND funnel = '{funnel}' ORDER BY cohort_date")  # fmt: skip
        trace = conversion[f"{platform} {funnel}"]
        assert trace["x"] == [r[0].isoformat() for r in rows]
        assert_series(trace["y"], [r[1] for r in rows], f"conversion {platform} {funnel}")

    for platform in ("kuaishou", "wechat"):
        (heatmap,) = charts[f"retention-{platform}"]
        rows = gold(warehouse, f"SELECT cohort_date, day_offset, retention_rate FROM retention_cohorts WHERE platform = '{platform}'")
        cohorts = sorted({r[0] for r in rows})
        rate = {(r[0], r[1]): r[2] for r in rows}
        assert heatmap["y"] == [c.isoformat() for c in cohorts]
        assert heatmap["x"] == ["day 1", "day 7", "day 14", "day 30"]
        for cohort, shown in zip(cohorts, heatmap["z"]):
            assert_series(shown, [rate.get((cohort, n)) for n in (1, 7, 14, 30)], f"retention {platform} {cohort}")

    daily = {t["name"]: t for t in charts["daily"]}
    for platform, kind in gold(warehouse, "SELECT DISTINCT platform, event_type FROM daily_engagement"):
        rows = gold(warehouse, f"SELECT event_date, events FROM daily_engagement WHERE platform = '{platform}' "
                               f"AND event_type = '{kind}' ORDER BY event_date")  # fmt: skip
        assert daily[f"{platform} {kind}s"]["x"] == [r[0].isoformat() for r in rows]
        assert_series(daily[f"{platform} {kind}s"]["y"], [r[1] for r in rows], f"daily {platform} {kind}")

    survival = {t["name"]: t for t in charts["survival"]}
    for platform in ("kuaishou", "wechat"):
        rows = gold(warehouse, f"SELECT coalesce(origin_channel, '(unknown)') c, sum(survived_30d) / sum(groups) FROM group_survival "
                               f"WHERE platform = '{platform}' GROUP BY c ORDER BY c")  # fmt: skip
        assert survival[platform]["x"] == [r[0] for r in rows]
        assert_series(survival[platform]["y"], [r[1] for r in rows], f"survival {platform}")

    largest = gold(warehouse, f"""
        SELECT platform || '/' || group_id, active_members_7d, silent_members_7d, inactive_members_14d FROM (
          SELECT *, rank() OVER (PARTITION BY platform ORDER BY members DESC, group_id) AS r
          FROM group_health WHERE as_of_date = '{AS_OF}') WHERE r <= 8 ORDER BY platform, members DESC, group_id""")
    active, silent, inactive = charts["silent"]
    assert active["x"] == [r[0] for r in largest] and len(largest) == 16
    for i, trace in enumerate((active, silent, inactive), start=1):
        assert_series(trace["y"], [r[i] for r in largest], f"group members ({trace['name']})")

    lifetime = {t["name"]: t for t in charts["lifetime"]}
    for platform in ("kuaishou", "wechat"):
        rows = gold(warehouse, f"SELECT strftime(cohort_month, '%Y-%m'), avg_lifetime_days, median_lifetime_days "
                               f"FROM member_lifetime WHERE platform = '{platform}' ORDER BY cohort_month")  # fmt: skip
        assert lifetime[f"{platform} mean"]["x"] == [r[0] for r in rows]
        assert_series(lifetime[f"{platform} mean"]["y"], [r[1] for r in rows], f"lifetime mean {platform}")
        assert_series(lifetime[f"{platform} median"]["y"], [r[2] for r in rows], f"lifetime median {platform}")

    propagation = {t["name"]: t for t in charts["propagation"]}
    rows = gold(warehouse, "SELECT event_date, propagation_rate, latency_p50_s, latency_p90_s, latency_p99_s "
                           "FROM cross_platform_propagation ORDER BY event_date")  # fmt: skip
    assert rows and propagation["propagation rate"]["x"] == [r[0].isoformat() for r in rows]
    for i, name in enumerate(("propagation rate", "latency p50", "latency p90", "latency p99"), start=1):
        assert_series(propagation[name]["y"], [r[i] for r in rows], name)
