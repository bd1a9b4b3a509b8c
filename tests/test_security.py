"""Security: admin actions need their permissions (a view-only staff user gets 403)."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from ingestion.models import ApiKey
from operations.models import BackupRun, DegradationState, TtlChange
from tests.ingest_helpers import new_org

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client):
    """Staff with every view permission and nothing else."""
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_a_view_only_staff_user_gets_403_from_every_admin_action(viewer):
    org, _ = new_org()
    key = org.api_keys.get()
    keys_before = ApiKey.objects.count()
    assert viewer.get(reverse("admin:ingestion_apikey_changelist")).status_code == 200

    issue = viewer.post(reverse("admin:ingestion_org_changelist"),
                        {"action": "issue_key", "_selected_action": [org.pk]})
    assert issue.status_code == 403
    assert ApiKey.objects.count() == keys_before

    revoke = viewer.post(reverse("admin:ingestion_apikey_changelist"),
                         {"action": "revoke", "_selected_action": [key.pk]})
    assert revoke.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None

    backup = viewer.post(reverse("admin:operations_backuprun_changelist"),
                         {"action": "back_up_now", "_selected_action": []})
    assert backup.status_code == 403
    assert not BackupRun.objects.exists()

    add_key = viewer.post(reverse("admin:ingestion_apikey_add"), {"org": org.pk, "name": "x"})
    assert add_key.status_code == 403

    state = DegradationState.load()
    level = viewer.post(reverse("admin:operations_degradationstate_change", args=[state.pk]),
                        {"manual_level": "4", "reason": "not mine to set"})
    assert level.status_code == 403
    assert DegradationState.load().effective_level == 0

    ttl = viewer.post(reverse("admin:operations_ttlchange_add"), {"days": 1, "reason": "x"})
    assert ttl.status_code == 403
    assert not TtlChange.objects.exists()


def test_issuing_a_key_takes_the_change_permission_on_keys(client):
    org, _ = new_org()
    user = User.objects.create_user("keys", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        codename__in=["view_org", "view_apikey", "change_apikey"]))
    client.force_login(user)
    response = client.post(reverse("admin:ingestion_org_changelist"),
                           {"action": "issue_key", "_selected_action": [org.pk]})
    assert response.status_code == 302
    assert org.api_keys.count() == 2
