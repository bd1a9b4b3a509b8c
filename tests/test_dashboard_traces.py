"""In a real browser, over spans posted through the API and drained into ClickHouse: filter
the trace list, page it and share its URL, switch org, open another org's trace by URL."""

import pytest
from selenium.webdriver.support.ui import Select

from dashboard.models import Membership
from tests.browser import *  # noqa: F403
from tests.browser import By, dashboard_url, sign_in, switch_org, wait_for, wait_text
from tests.dashboard_data import minutes_ago, new_trace_id, post, span
from tests.test_dashboard_access import create_user

pytestmark = pytest.mark.django_db(transaction=True)


def listed(browser) -> list[str]:
    """The trace names in the list, as a person reads them."""
    rows = browser.find_elements(By.CSS_SELECTOR, "#traces tbody tr td:nth-child(2)")
    return [row.text for row in rows]


def person(email: str, org_slug: str, role: str = "viewer") -> tuple[str, object]:
    password = create_user(email, org_slug, role)
    return password, Membership.objects.get(user__username=email, org__slug=org_slug).org


def test_filter_the_traces_and_follow_a_shared_url(browser):
    password, org = person("filter@example.com", f"bt-{new_trace_id()[:8]}")
    spans = []
    for i, (name, model, status) in enumerate([
            ("summarise report", "gpt-4o-mini", "ok"), ("translate page", "claude-3-5-haiku",
                                                         "ok"),
            ("summarise email", "gpt-4o-mini", "error"), ("classify ticket", "gpt-4o", "ok")]):
        tid = new_trace_id()
        spans.append(span(tid, 0, start=minutes_ago(50 - i), name=name, model=model,
                          status=status, status_message="boom" if status == "error" else "",
                          environment="staging" if i == 3 else "production"))
    post(org, spans)
    sign_in(browser, "filter@example.com", password, "/traces/")
    assert listed(browser) == ["classify ticket", "summarise email", "translate page",
                               "summarise report"]  # newest first

    wait_for(browser, "#f-model").send_keys("gpt-4o-mini")
    browser.find_element(By.CSS_SELECTOR, "#trace-filters button[type=submit]").click()
    wait_text(browser, "#row-count", "2 traces on this page")
    assert listed(browser) == ["summarise email", "summarise report"]
    Select(browser.find_element(By.ID, "f-status")).select_by_value("error")
    browser.find_element(By.TAG_NAME, "body").send_keys("/")  # the keyboard way to search
    assert browser.switch_to.active_element.get_attribute("id") == "f-name"
    browser.switch_to.active_element.send_keys("SUMMARISE")
    browser.find_element(By.CSS_SELECTOR, "#trace-filters button[type=submit]").click()
    wait_text(browser, "#row-count", "1 trace on this page")
    assert listed(browser) == ["summarise email"]
    shared = browser.current_url
    assert "model=gpt-4o-mini" in shared and "status=error" in shared

    # Someone else of the org follows the link: the same view.
    other_pw, _ = person("colleague@example.com", org.slug)
    browser.delete_all_cookies()
    sign_in(browser, "colleague@example.com", other_pw, shared.split(browser.live_server_url)[1])
    wait_text(browser, "#row-count", "1 trace on this page")
    assert listed(browser) == ["summarise email"]
    assert browser.find_element(By.ID, "f-model").get_attribute("value") == "gpt-4o-mini"

    browser.get(dashboard_url(browser, "/traces/?environment=staging"))
    assert listed(browser) == ["classify ticket"]
    browser.get(dashboard_url(browser, "/traces/?environment=nowhere"))
    assert "No traces match these filters" in wait_for(browser, "#no-match").text


def test_page_through_the_traces_and_share_page_two(browser):
    password, org = person("pager@example.com", f"bt-{new_trace_id()[:8]}")
    post(org, [span(new_trace_id(), 0, start=minutes_ago(100 - i / 10), name=f"call {i:02d}")
               for i in range(57)])
    sign_in(browser, "pager@example.com", password, "/traces/?range=7d")
    wait_text(browser, "#row-count", "50 traces on this page")
    first_page = listed(browser)
    assert first_page[0] == "call 56" and first_page[-1] == "call 07"
    browser.find_element(By.ID, "next-page").click()
    wait_text(browser, "#row-count", "7 traces on this page")
    assert listed(browser) == [f"call {i:02d}" for i in range(6, -1, -1)]
    assert not browser.find_elements(By.ID, "next-page")
    page_two = browser.current_url
    browser.get(page_two)  # the shared link of page 2 reproduces page 2
    wait_text(browser, "#row-count", "7 traces on this page")
    assert listed(browser)[0] == "call 06"


def test_switching_org_shows_only_that_orgs_traces(browser):
    slug_a, slug_b = f"bt-a-{new_trace_id()[:6]}", f"bt-b-{new_trace_id()[:6]}"
    password, org_a = person("two-orgs@example.com", slug_a, "admin")
    create_user("two-orgs@example.com", slug_b, "viewer", "--password", password)
    org_b = Membership.objects.get(user__username="two-orgs@example.com", org__slug=slug_b).org
    post(org_a, [span(new_trace_id(), 0, start=minutes_ago(5), name="trace of org A")])
    post(org_b, [span(new_trace_id(), 0, start=minutes_ago(5), name="trace of org B")])
    sign_in(browser, "two-orgs@example.com", password, "/traces/")
    assert listed(browser) == ["trace of org A"]
    switch_org(browser, f"{slug_b} (viewer)")
    assert listed(browser) == ["trace of org B"]


def test_a_user_of_org_a_gets_404_for_org_bs_trace(browser):
    password, _ = person("only-a@example.com", f"bt-{new_trace_id()[:8]}")
    _, org_b = person("owner-b@example.com", f"bt-{new_trace_id()[:8]}")
    tid = new_trace_id()
    post(org_b, [span(tid, 0, start=minutes_ago(3), name="org B private trace",
                      session_id="b-session")])
    sign_in(browser, "only-a@example.com", password, f"/traces/{tid}")
    assert "Not found" in wait_for(browser, "#not-found h1").text
    assert "org B private trace" not in browser.page_source
    browser.get(dashboard_url(browser, f"/span/?trace={tid}&span={tid}-s0"))
    assert "org B private trace" not in browser.page_source
    browser.get(dashboard_url(browser, "/session/?id=b-session"))
    assert wait_for(browser, "#not-found")
    browser.get(dashboard_url(browser, "/traces/"))
    assert "org B private trace" not in browser.page_source
