"""In a real browser: a trace of hundreds of spans, a 200 KB span, a hostile span, and a
session read as a conversation; over spans posted through the API and drained."""

import time

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.support.ui import WebDriverWait

from dashboard.models import Membership
from tests.browser import *  # noqa: F403
from tests.browser import By, dashboard_url, sign_in, wait_for, wait_text
from tests.dashboard_data import minutes_ago, new_trace_id, post, span
from tests.test_dashboard_access import create_user

pytestmark = pytest.mark.django_db(transaction=True)


def viewer(email: str):
    password = create_user(email, f"td-{new_trace_id()[:8]}", "viewer")
    return password, Membership.objects.get(user__username=email).org


def open_span(browser, tid: str, span_id: str):
    """Click the span's row in the tree, as a person does; wait for its panel to be swapped
    in (the panel shown before is marked, so even a click on the same span waits)."""
    row = wait_for(browser, f'#span-tree .tree-row[data-span="{span_id}"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});"
                           "document.getElementById('span-detail').dataset.before = '1';", row)
    row.click()
    WebDriverWait(browser, 15).until(lambda d: d.execute_script(
        "const p = document.getElementById('span-detail');"
        "return p && !p.dataset.before && p.dataset.span === arguments[0];", span_id))
    return browser.find_element(By.ID, "span-detail")


def test_a_trace_of_hundreds_of_spans_in_a_deep_tree(browser):
    password, org = viewer("deep@example.com")
    tid, start = new_trace_id(), minutes_ago(15)
    spans = [span(tid, 0, start=start, name="agent run")]
    for i in range(1, 120):  # a chain 120 deep
        spans.append(span(tid, i, start=start, parent=f"{tid}-s{i - 1}", name=f"deep step {i}"))
    for i in range(120, 400):  # and 280 tool calls under the root
        spans.append(span(tid, i, start=start, parent=f"{tid}-s0", name=f"tool call {i}",
                          kind="tool"))
    post(org, spans)
    sign_in(browser, "deep@example.com", password, "/traces/")
    browser.find_element(By.LINK_TEXT, "agent run").click()
    assert wait_for(browser, "#trace-name").text == "agent run"
    assert browser.find_element(By.ID, "span-count").text == "400"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#span-tree .tree-row")) == 400
    # The deepest span of the chain, then one far down the list: each opens its own panel,
    # loaded into this page (htmx), not by loading the 400-span page again.
    browser.execute_script("window.sameDocument = true")
    for index, name in ((99, "deep step 99"), (377, "tool call 377")):
        began = time.monotonic()
        panel = open_span(browser, tid, f"{tid}-s{index}")
        assert panel.find_element(By.ID, "span-title").text.startswith(name)
        assert time.monotonic() - began < 5, "a span's panel took too long to open"
        assert f"span={tid}-s{index}" in browser.current_url  # the link names the span
    assert browser.execute_script("return window.sameDocument") is True
    selected = browser.find_elements(By.CSS_SELECTOR, '.tree-row[aria-selected="true"]')
    assert [row.get_attribute("data-span") for row in selected] == [f"{tid}-s377"]
    # Followed as a shared link, the page opens on that span.
    browser.get(browser.current_url)
    assert wait_for(browser, "#span-title").text.startswith("tool call 377")


def test_a_200_kb_span_opens_folded_with_its_size(browser):
    password, org = viewer("big@example.com")
    tid, start = new_trace_id(), minutes_ago(12)
    big = "".join(f"line {i:05d} of a long retrieved document. " for i in range(5000))[:200_000]
    post(org, [span(tid, 0, start=start, name="rag answer"),
               span(tid, 1, start=start, parent=f"{tid}-s0", name="retrieve", input=big,
                    output={"chunks": [{"id": i, "text": f"chunk {i}"} for i in range(50)]})])
    sign_in(browser, "big@example.com", password, f"/traces/{tid}")
    panel = open_span(browser, tid, f"{tid}-s1")
    summary = panel.find_element(By.CSS_SELECTOR, "#span-input details.fold > summary")
    assert "Show all (200,000 characters, 195.3 KB)" in summary.text.replace("\xa0", " ")
    preview = panel.find_element(By.CSS_SELECTOR, "#span-input pre.preview")
    assert preview.text.startswith("line 00000 of a long") and len(preview.text) < 2100
    full = panel.find_element(By.CSS_SELECTOR, "#span-input details.fold pre.text")
    assert not full.is_displayed()
    summary.click()
    assert full.is_displayed() and full.get_attribute("textContent") == big  # all of it
    assert "50 items" in panel.find_element(By.ID, "span-output").text  # JSON, folded


def test_a_hostile_span_renders_as_text(browser):
    password, org = viewer("xss@example.com")
    tid, start = new_trace_id(), minutes_ago(8)
    post(org, [span(tid, 0, start=start, name="<img src=x onerror=alert(2)>",
                    input="<script>alert(1)</script>",
                    output=[{"role": "assistant", "content": "<b onmouseover=alert(3)>hi</b>"}],
                    metadata={"<script>alert(4)</script>": "</pre><script>alert(5)</script>"},
                    tags=["<svg onload=alert(6)>"], status="error",
                    status_message="<script>alert(7)</script>")])
    sign_in(browser, "xss@example.com", password, "/traces/")
    assert "<img src=x onerror=alert(2)>" in wait_for(browser, "#traces").text
    browser.find_element(By.CSS_SELECTOR, "#traces tbody a").click()
    panel = open_span(browser, tid, f"{tid}-s0")
    assert panel.find_element(By.ID, "span-input").text == "<script>alert(1)</script>"
    assert "<b onmouseover=alert(3)>hi</b>" in panel.find_element(By.ID, "span-output").text
    assert "</pre><script>alert(5)</script>" in panel.find_element(By.ID, "span-metadata").text
    assert panel.find_element(By.ID, "status-message").text == "<script>alert(7)</script>"
    assert not browser.find_elements(By.CSS_SELECTOR, "#main script, #main img, #main svg")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises


def test_a_session_reads_as_a_conversation(browser):
    password, org = viewer("conv@example.com")
    turns = [("What is the capital of France?", "Paris."),
             ("And of Italy?", "Rome.")]
    post(org, [span(new_trace_id(), 0, start=minutes_ago(20 - i), name=f"chat turn {i + 1}",
                    session_id="conv-1", input=[{"role": "system", "content": "Be brief."},
                                                {"role": "user", "content": said}],
                    output=answer) for i, (said, answer) in enumerate(turns)])
    sign_in(browser, "conv@example.com", password, "/sessions/")
    browser.find_element(By.LINK_TEXT, "conv-1").click()
    wait_text(browser, "#turn-count", "2")
    for number, (said, answer) in enumerate(turns, start=1):
        turn = wait_text(browser, f"#conversation article:nth-child({number}) .turn-body",
                         answer)
        assert said in turn.text and "Be brief." not in turn.text
    assert browser.find_element(By.CSS_SELECTOR, "#conversation article:first-child"
                                ).text.count("chat turn 1") == 1
    browser.get(dashboard_url(browser, "/session/?id=no-such-session"))
    assert wait_for(browser, "#not-found")
