"""In a real browser (headless Chromium): a member reads the Overview charts, drawn by uPlot
with their org's data; groups costs by user; reads a score distribution; and cannot open
Operations without staff rights. A failing test leaves a screenshot in var/test-screenshots/."""

import pytest

from tests.browser import *  # noqa: F403
from tests.browser import By, dashboard_url, sign_in, wait_for, wait_text
from tests.test_dashboard_charts import COSTS_BY_USER, create_member, demo  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)

# The chart's series as uPlot holds them, and how many of the canvas' pixels are not blank.
READ_CHART = """
const chart = window.dashboardCharts && window.dashboardCharts[arguments[0]];
if (!chart) return null;
const canvas = chart.root.querySelector("canvas");
const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
let inked = 0;
for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) inked++;
return {data: chart.data, inked: inked, width: canvas.width};
"""


def read_chart(browser, chart_id: str) -> dict:
    wait_for(browser, f'[data-chart="{chart_id}"] canvas')
    chart = browser.execute_script(READ_CHART, chart_id)
    assert chart is not None, f"{chart_id} was not drawn"
    return chart


def test_overview_charts_are_drawn_with_the_orgs_data(browser, demo):  # noqa: F811
    email, password = create_member(demo["org"])
    sign_in(browser, email, password, "/overview/?window=1h")
    wait_text(browser, "#total-spans", "4")
    volume = read_chart(browser, "chart-volume")
    ticks, spans, traces = volume["data"]
    assert len(ticks) == len(spans) == 60  # a minute each over the hour
    assert sum(spans) == 4 and sum(traces) == 3
    assert volume["inked"] > 500, "the canvas is blank"
    latency = read_chart(browser, "chart-latency")
    assert [p for p in latency["data"][1] if p is not None], "no latency point"
    cost = read_chart(browser, "chart-cost")
    assert round(sum(sum(series) for series in cost["data"][1:]), 6) == 0.875
    # Top users by cost name the org's users only.
    users = [row.text for row in browser.find_elements(
        By.CSS_SELECTOR, ".top-table:nth-of-type(2) tbody td:first-child")]
    assert users == ["user-ann", "user-bob"]


def test_costs_grouped_by_user_show_the_right_totals(browser, demo):  # noqa: F811
    email, password = create_member(demo["org"])
    sign_in(browser, email, password, "/costs/?window=24h")
    wait_for(browser, "#costs-table")
    # Switch the grouping as a person does: the htmx link swaps the body and the URL.
    browser.find_element(By.LINK_TEXT, "user").click()
    wait_for(browser, '#costs-table tr[data-group="user-bob"]')
    rows = {row.get_attribute("data-group"): row.find_element(By.CSS_SELECTOR, "td.cost").text
            for row in browser.find_elements(By.CSS_SELECTOR, "#costs-table tbody tr")}
    assert rows == {user: f"{float(cost):.6f}" for user, cost in COSTS_BY_USER.items()}
    assert "group_by=user" in browser.current_url  # the view can be shared
    assert "charts-finetune-x" in wait_for(browser, "#unpriced").text
    chart = read_chart(browser, "chart-costs")
    assert len(chart["data"]) == 3  # the x axis and one series per user


def test_quality_shows_a_score_distribution(browser, demo):  # noqa: F811
    email, password = create_member(demo["org"])
    sign_in(browser, email, password, "/quality/?window=1h")
    chart = read_chart(browser, "chart-dist-helpfulness")
    assert sum(chart["data"][1]) == 4 and chart["inked"] > 100
    tone = read_chart(browser, "chart-dist-tone")
    assert tone["data"][1] == [2, 1]
    assert "closed" in wait_for(browser, '[data-breaker="llm_evaluation"]').text


def test_operations_is_not_there_for_a_member_without_staff_rights(browser, demo):  # noqa: F811
    email, password = create_member(demo["org"], role="admin")
    sign_in(browser, email, password, "/overview/")
    nav = wait_for(browser, "header.top nav").text
    assert "Operations" not in nav and "Costs" in nav
    browser.get(dashboard_url(browser, "/operations/"))
    assert "Degradation" not in browser.page_source
    assert not browser.find_elements(By.ID, "degradation-level")


def test_operations_shows_staff_the_platform_state(browser, demo):  # noqa: F811
    email, password = create_member(demo["org"], staff=True)
    sign_in(browser, email, password, "/operations/")
    assert "Normal" in wait_for(browser, "#degradation-level").text
    partitions = browser.find_elements(By.CSS_SELECTOR, "#partition-lag tbody tr")
    assert partitions, "no partition listed"
    assert browser.find_element(By.LINK_TEXT, "Admin").get_attribute("href").endswith("/admin/")
