"""Admin smoke test: every registered model's list, search, add and change pages render for
a staff user and are refused to anyone else; key issuance shows the secret once."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.urls import reverse

from ingestion.models import ApiKey, hash_key
from operations.models import BackupRun, ConfigFlag, DegradationChange, DegradationState
from operations.services.degradation import set_manual_level
from tests.ingest_helpers import new_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def some_of_everything():
    new_org()
    DegradationState.load()
    set_manual_level(2, reason="smoke", changed_by="pytest")
    ConfigFlag.objects.create(key="smoke", type="int", value="1")
    BackupRun.objects.create(database="llmops", location="/tmp/x", status="succeeded")


def admin_urls(model, obj=None) -> dict[str, str]:
    prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
    urls = {"list": reverse(f"{prefix}_changelist")}
    model_admin = admin.site._registry[model]
    if model_admin.search_fields:
        urls["search"] = urls["list"] + "?q=smoke%27%22%3C"
    urls["add"] = reverse(f"{prefix}_add")
    if obj is not None:
        urls["change"] = reverse(f"{prefix}_change", args=[obj.pk])
    return urls


def test_every_model_page_renders_for_staff(staff_client, some_of_everything):
    assert admin.site._registry, "nothing registered"
    for model, model_admin in admin.site._registry.items():
        obj = model.objects.first()
        for kind, url in admin_urls(model, obj).items():
            response = staff_client.get(url)
            if kind == "add" and not model_admin.has_add_permission(response.wsgi_request):
                assert response.status_code == 403, url
                continue
            assert response.status_code == 200, (url, response.status_code)


def test_admin_is_refused_to_non_staff(client, some_of_everything):
    user = User.objects.create_user("viewer", password="pw")
    client.force_login(user)
    for model in admin.site._registry:
        response = client.get(admin_urls(model)["list"])
        assert response.status_code == 302 and "/login/" in response["Location"]
    client.logout()
    assert client.get(reverse("admin:index")).status_code == 302


def test_adding_a_key_in_the_admin_shows_its_secret_once(staff_client):
    org, _ = new_org()
    response = staff_client.post(reverse("admin:ingestion_apikey_add"),
                                 {"org": org.pk, "name": "from the admin"}, follow=True)
    assert response.status_code == 200
    (message,) = [str(m) for m in response.context["messages"] if "copy it now" in str(m)]
    raw = message.split(": ", 1)[1].split()[0]
    key = ApiKey.objects.get(name="from the admin")
    assert key.key_hash == hash_key(raw) and raw.startswith(key.prefix)
    page = staff_client.get(reverse("admin:ingestion_apikey_change", args=[key.pk]))
    assert raw not in page.content.decode()


def test_revoke_action_and_manual_level_through_the_admin(staff_client):
    org, _ = new_org()
    key = org.api_keys.get()
    staff_client.post(reverse("admin:ingestion_apikey_changelist"),
                      {"action": "revoke", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None

    state = DegradationState.load()
    staff_client.post(reverse("admin:operations_degradationstate_change", args=[state.pk]),
                      {"manual_level": "4", "reason": "incident 42"})
    assert DegradationState.load().effective_level == 4
    change = DegradationChange.objects.get()
    assert (change.to_level, change.manual, change.changed_by, change.reason) == (
        4, True, "ops", "incident 42")
