"""The keys page: an org admin issues a key (its secret shown once) and revokes it, without
Django staff rights; viewers and members see the keys but can do neither."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from ingestion.models import ApiKey, Org
from ingestion.services.tenancy import forget_cached_keys
from tests.browser import *  # noqa: F403
from tests.browser import By, sign_in, wait_for, wait_text
from tests.ingest_helpers import client_for, make_span
from tests.test_dashboard_access import create_user, signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def _spans_accepted(raw_key: str) -> int:
    return client_for(raw_key).post("/api/v1/spans", {"spans": [make_span("k" * 32, 0)]},
                                    format="json").status_code


def test_an_admin_issues_and_revokes_a_key_in_the_browser(browser):
    password = create_user("keys-admin@example.com", "brw-keys", "admin")
    assert not get_user_model().objects.get(username="keys-admin@example.com").is_staff
    sign_in(browser, "keys-admin@example.com", password, "/keys/")
    assert "No API keys yet" in browser.page_source
    wait_for(browser, "#issue-key input[name=name]").send_keys("ci runner")
    browser.find_element(By.CSS_SELECTOR, "#issue-key button").click()
    secret = wait_for(browser, "#new-key-secret").text.strip()
    assert secret.startswith("llm_")
    assert "will not be shown again" in browser.page_source
    key = ApiKey.objects.get(org__slug="brw-keys")
    assert key.name == "ci runner" and secret.startswith(key.prefix)
    assert _spans_accepted(secret) == 202  # the key works against the API

    browser.get(browser.live_server_url + "/keys/")  # shown once: not on the next visit
    assert secret not in browser.page_source
    row = wait_for(browser, f'tr[data-key="{key.prefix}"]')
    assert "active" in row.text
    row.find_element(By.CSS_SELECTOR, "button.danger").click()
    browser.switch_to.alert.accept()
    wait_text(browser, ".messages", f"Revoked key {key.prefix}")
    assert "revoked" in wait_for(browser, f'tr[data-key="{key.prefix}"]').text
    forget_cached_keys()  # API processes keep a key for API_KEY_CACHE_TTL_S (message says)
    assert _spans_accepted(secret) == 401  # and the API refuses it now


def test_a_viewer_sees_no_buttons_and_cannot_issue_keys(browser):
    admin_pw = create_user("keys-a2@example.com", "brw-keys2", "admin")
    viewer_pw = create_user("keys-viewer@example.com", "brw-keys2", "viewer")
    org = Org.objects.get(slug="brw-keys2")
    key, _ = ApiKey.issue(org, name="existing")
    sign_in(browser, "keys-viewer@example.com", viewer_pw, "/keys/")
    wait_for(browser, f'tr[data-key="{key.prefix}"]')
    assert not browser.find_elements(By.ID, "issue-key")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.danger")
    assert "Only an admin of this org issues and revokes keys" in browser.page_source

    # Posting anyway, as a crafted form would: refused, nothing issued or revoked.
    viewer = signed_in("keys-viewer@example.com", viewer_pw)
    assert viewer.post("/keys/issue", {"name": "sneaky"}).status_code == 403
    assert viewer.post(f"/keys/{key.id}/revoke").status_code == 403
    create_user("keys-member@example.com", "brw-keys2", "member", "--password", "member-pw-1")
    member = signed_in("keys-member@example.com", "member-pw-1")
    assert member.post("/keys/issue", {"name": "sneaky"}).status_code == 403
    assert list(ApiKey.objects.filter(org=org).values_list("name", "revoked_at")) == [
        ("existing", None)]
    assert signed_in("keys-a2@example.com", admin_pw).post("/keys/issue").status_code == 200


def test_an_admin_cannot_revoke_another_orgs_key():
    password = create_user("keys-a3@example.com", "brw-keys3", "admin")
    other, _ = Org.objects.get_or_create(slug="brw-keys-other")
    key, _ = ApiKey.issue(other)
    client = signed_in("keys-a3@example.com", password)
    assert client.post(f"/keys/{key.id}/revoke").status_code == 404
    assert ApiKey.objects.get(pk=key.pk).is_active
    assert Client().post("/keys/issue").status_code == 302  # signed out: to the sign-in
