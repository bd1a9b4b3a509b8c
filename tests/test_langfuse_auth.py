"""Basic auth as Langfuse SDKs send it (base64 of public id:secret), beside Bearer; the public
id of every key, printed by create_api_key on the line before the secret."""

import base64
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from ingestion.models import ApiKey, Org
from tests.ingest_helpers import client_for, new_org

pytestmark = pytest.mark.django_db


def basic_client(public_id: str, secret: str) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{public_id}:{secret}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def projects(client: APIClient):
    return client.get("/api/public/projects")


def test_basic_with_the_keys_public_id_authenticates_as_its_org():
    org, raw = new_org(name="Team A")
    key = ApiKey.objects.get(org=org)
    assert key.public_id.startswith("pk-")
    response = projects(basic_client(key.public_id, raw))
    assert response.status_code == 200, response.content
    assert response.json()["data"] == [{"id": org.slug, "name": "Team A", "metadata": {},
                                        "organization": {"id": org.slug, "name": "Team A"}}]


def test_a_public_id_of_another_key_is_refused_and_says_so():
    org, raw = new_org()
    _, other_raw = new_org()
    other = ApiKey.objects.exclude(org=org).latest("id")
    response = projects(basic_client(other.public_id, raw))
    assert response.status_code == 401
    assert "does not belong to this secret key" in response.json()["detail"]
    assert other.public_id in response.json()["detail"]
    assert projects(basic_client("pk-llm-made-up", raw)).status_code == 401
    # The secret is what authenticates: a public id alone, or with a wrong secret, is not.
    wrong_secret = projects(basic_client(other.public_id, "llm_not-a-key"))
    assert wrong_secret.status_code == 401
    assert wrong_secret.json()["detail"] == "invalid or revoked API key"
    assert projects(basic_client(other.public_id, other_raw)).status_code == 200


@pytest.mark.parametrize("credentials", ["not base64 at all!", base64.b64encode(b"no-colon")
                                         .decode(), base64.b64encode(b"pk-x:").decode(),
                                         base64.b64encode(b"\xff\xfe:\xff").decode()])
def test_bad_basic_credentials_are_a_401_that_says_what_is_expected(credentials):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {credentials}")
    response = projects(client)
    assert response.status_code == 401
    assert "base64 of `public key:secret key`" in response.json()["detail"]


def test_a_revoked_key_is_refused_with_basic_too():
    org, raw = new_org()
    key = ApiKey.objects.get(org=org)
    assert projects(basic_client(key.public_id, raw)).status_code == 200
    key.revoke()
    from ingestion.services.tenancy import forget_cached_keys
    forget_cached_keys()  # else the process trusts the key for API_KEY_CACHE_TTL_S
    response = projects(basic_client(key.public_id, raw))
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid or revoked API key"


def test_bearer_still_works_and_other_schemes_are_refused():
    org, raw = new_org()
    assert projects(client_for(raw)).json()["data"][0]["id"] == org.slug
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    assert projects(client).status_code == 401


def test_create_api_key_prints_the_public_id_before_the_secret_on_the_last_line(tmp_path):
    out = StringIO()
    call_command("create_api_key", "printed-org", stdout=out)
    lines = out.getvalue().strip().splitlines()
    key = ApiKey.objects.get(org=Org.objects.get(slug="printed-org"))
    assert lines[-2] == f"public key: {key.public_id}"
    assert projects(basic_client(key.public_id, lines[-1])).status_code == 200
    reused = []
    for _ in range(2):
        out = StringIO()
        call_command("create_api_key", "printed-org", "--reuse-file", str(tmp_path / "k"),
                     stdout=out)
        reused.append(out.getvalue().strip().splitlines()[-2:])
    assert reused[0] == reused[1] and reused[0][0].startswith("public key: pk-")
    assert ApiKey.objects.get(public_id=reused[0][0].split(": ")[1]).org.slug == "printed-org"


def test_every_key_has_its_own_public_id():
    org, _ = new_org()
    ids = {ApiKey.issue(org)[0].public_id for _ in range(5)}
    assert len(ids) == 5


def test_the_admin_shows_the_public_id(admin_client):
    org, _ = new_org()
    key = ApiKey.objects.get(org=org)
    assert key.public_id in admin_client.get("/admin/ingestion/apikey/").content.decode()
    page = admin_client.get(f"/admin/ingestion/apikey/{key.pk}/change/").content.decode()
    assert key.public_id in page
    added = admin_client.post("/admin/ingestion/apikey/add/", {"org": org.pk, "name": "x"},
                              follow=True).content.decode()
    new_key = ApiKey.objects.get(org=org, name="x")
    assert f"public key {new_key.public_id}" in added


def test_every_langfuse_path_refuses_a_wrong_public_id_and_stores_nothing():
    org, raw = new_org()
    other = ApiKey.issue(new_org()[0])[0]
    client = basic_client(other.public_id, raw)
    for path, body in (("/api/public/ingestion", {"batch": []}),
                       ("/api/public/scores", {"traceId": "t", "name": "n", "value": 1}),
                       ("/api/public/otel/v1/traces", {"resourceSpans": []})):
        response = client.post(path, body, format="json")
        assert response.status_code == 401, (path, response.content)
        assert "does not belong to this secret key" in response.content.decode(), path
    from evaluation.services import scores
    assert scores.read(org_id=org.id) == []
