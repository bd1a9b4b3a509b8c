"""In a real browser: a person signs in, sees only their orgs, and switches between them."""

import pytest

from tests.browser import *  # noqa: F403
from tests.browser import By, sign_in, switch_org, wait_for
from tests.test_dashboard_access import create_user

pytestmark = pytest.mark.django_db(transaction=True)


def test_sign_in_see_only_your_orgs_and_switch(browser):
    password = create_user("sig@example.com", "brw-one", "admin")
    create_user("sig@example.com", "brw-two", "viewer", "--password", password)
    create_user("stranger@example.com", "brw-foreign", "admin")
    sign_in(browser, "sig@example.com", password, "/traces/")
    options = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#org-select option")]
    assert options == ["brw-one (admin)", "brw-two (viewer)"]
    assert "brw-foreign" not in browser.page_source
    switch_org(browser, "brw-two (viewer)")
    assert browser.current_url.endswith("/traces/")


def test_a_wrong_password_keeps_you_out(browser):
    create_user("wrong@example.com", "brw-w", "admin", "--password", "the-right-one-1")
    browser.get(browser.live_server_url + "/traces/")
    wait_for(browser, "#id_username").send_keys("wrong@example.com")
    browser.find_element(By.ID, "id_password").send_keys("not-it")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "did not match" in wait_for(browser, "p.error").text
    assert not browser.find_elements(By.CSS_SELECTOR, "header.top")
