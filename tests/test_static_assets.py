"""Static files as a CDN in front would see them: pages name them by a hashed name, served
with a cache header that lets them be kept for good; the plain name is only cached briefly."""

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

HASHED_CSS = re.compile(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"')


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_page_names_a_static_file_by_its_hash_and_it_is_served_for_good(client):
    page = client.get("/admin/login/")
    assert page.status_code == 200
    found = HASHED_CSS.search(page.content.decode())
    assert found, "the admin's stylesheet is not named by a hashed name"
    url = found.group(1)

    response = client.get(url)
    assert response.status_code == 200
    cache_control = response["Cache-Control"]
    max_age = int(re.search(r"max-age=(\d+)", cache_control).group(1))
    assert max_age >= 365 * 24 * 3600 and "immutable" in cache_control, cache_control
    collected = Path(settings.STATIC_ROOT, url.removeprefix(settings.STATIC_URL))
    assert body_of(response) == collected.read_bytes()
    # Its own references (fonts, images) are hashed too: the CDN may keep them as long.
    assert re.search(rb'url\("[^"]*\.[0-9a-f]{12}\.', collected.read_bytes())
    assert response["Content-Type"].startswith("text/css")


def test_the_hashed_file_is_sent_compressed_to_a_client_that_accepts_it(client):
    url = HASHED_CSS.search(client.get("/admin/login/").content.decode()).group(1)
    response = client.get(url, HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in response["Vary"]


def test_the_plain_name_is_served_but_not_kept_for_good(client):
    response = client.get(f"{settings.STATIC_URL}admin/css/base.css")
    assert response.status_code == 200
    assert "immutable" not in response["Cache-Control"]
