"""Dashboard sign-in, memberships and sessions, through Django's test client: who may see
which org, and where a signed-in session lives (Redis, 24 h)."""

from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client

from dashboard.models import Membership
from ingestion.models import Org

pytestmark = pytest.mark.django_db


def create_user(email: str, org: str, role: str = "admin", *extra: str) -> str:
    out = StringIO()
    call_command("create_user", email, "--org", org, "--role", role, *extra, stdout=out)
    return out.getvalue().strip().splitlines()[-1]


def signed_in(email: str, password: str) -> Client:
    client = Client()
    answer = client.post("/sign-in/", {"username": email, "password": password})
    assert answer.status_code == 302, answer.content[:500]
    return client


def test_create_user_prints_a_generated_password_last_that_signs_in():
    password = create_user("ada@example.com", "dash-acme", "admin")
    assert len(password) >= 12
    user = get_user_model().objects.get(username="ada@example.com")
    assert Membership.objects.get(user=user).role == "admin"
    assert Org.objects.filter(slug="dash-acme").exists()
    client = signed_in("ada@example.com", password)
    page = client.get("/", follow=True)
    assert page.status_code == 200
    assert b"dash-acme" in page.content


def test_create_user_takes_a_password_and_a_password_file(tmp_path):
    assert create_user("bo@example.com", "dash-b", "viewer", "--password", "s3cret-pw!") \
        == "s3cret-pw!"
    signed_in("bo@example.com", "s3cret-pw!")
    kept = tmp_path / "demo_password"
    first = create_user("demo@example.com", "dash-demo", "admin", "--password-file", str(kept))
    again = create_user("demo@example.com", "dash-demo", "admin", "--password-file", str(kept))
    assert first == again == kept.read_text().strip()
    assert kept.stat().st_mode & 0o777 == 0o600
    signed_in("demo@example.com", first)


def test_create_user_refuses_a_name_that_is_no_email():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="email"):
        create_user("not-an-email", "dash-x")


def test_pages_need_a_sign_in_and_a_wrong_password_is_refused():
    assert Client().get("/traces/").status_code == 302
    create_user("cy@example.com", "dash-c", "viewer", "--password", "right-pw-1")
    answer = Client().post("/sign-in/", {"username": "cy@example.com", "password": "wrong"})
    assert answer.status_code == 200 and b"did not match" in answer.content


def test_the_session_is_kept_in_redis_for_24_hours():
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.cache"
    assert settings.SESSION_COOKIE_AGE == 86400
    create_user("di@example.com", "dash-d", "viewer", "--password", "pw-di-12345")
    client = signed_in("di@example.com", "pw-di-12345")
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    store = caches[settings.SESSION_CACHE_ALIAS]
    redis_client = store._cache.get_client(write=False)
    keys = [k for k in redis_client.keys("*") if session_key.encode() in k]
    assert len(keys) == 1, "the session is not stored in the sessions cache's Redis"
    ttl = redis_client.ttl(keys[0])
    assert 86400 - 60 < ttl <= 86400


def test_the_org_switcher_lists_only_the_users_orgs_and_switches():
    create_user("ed@example.com", "dash-e1", "admin", "--password", "pw-ed-12345")
    create_user("ed@example.com", "dash-e2", "viewer", "--password", "pw-ed-12345")
    create_user("someone@example.com", "dash-other", "admin")
    client = signed_in("ed@example.com", "pw-ed-12345")
    page = client.get("/traces/").content.decode()
    assert "dash-e1" in page and "dash-e2" in page and "dash-other" not in page
    e2 = Org.objects.get(slug="dash-e2")
    answer = client.post("/org/", {"org": e2.id, "next": "/traces/"})
    assert answer.status_code == 302 and answer["Location"] == "/traces/"
    page = client.get("/traces/").content.decode()
    assert f'value="{e2.id}" selected' in page
    other = Org.objects.get(slug="dash-other")
    assert client.post("/org/", {"org": other.id}).status_code == 400


def test_a_user_without_an_org_is_told_how_to_get_one():
    get_user_model().objects.create_user("lonely@example.com", password="pw-lonely-1")
    client = signed_in("lonely@example.com", "pw-lonely-1")
    answer = client.get("/traces/")
    assert answer.status_code == 403 and b"no organisation" in answer.content


def test_memberships_are_kept_in_the_admin(admin_client):
    password = create_user("adm@example.com", "dash-adm", "member")
    assert password
    listing = admin_client.get("/admin/dashboard/membership/")
    assert listing.status_code == 200 and b"adm@example.com" in listing.content
    assert admin_client.get("/admin/dashboard/membership/add/").status_code == 200


def test_one_membership_per_user_and_org():
    from django.db import IntegrityError, transaction

    create_user("once@example.com", "dash-once", "viewer")
    membership = Membership.objects.get(user__username="once@example.com")
    with pytest.raises(IntegrityError), transaction.atomic():
        Membership.objects.create(user=membership.user, org=membership.org, role="admin")
