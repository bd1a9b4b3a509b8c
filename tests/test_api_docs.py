"""The API's docs pages work on a machine without internet: every script, stylesheet and
icon they load is ours (the pinned drf-spectacular-sidecar, collected), and is served."""

import re

import pytest

pytestmark = pytest.mark.django_db

# Where a page names what the browser fetches: attributes, and Swagger UI's `url:` option.
REFERENCES = re.compile(r'(?:\bsrc|\bhref|\bspec-url)="([^"]*)"|\burl: "([^"]*)"')


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCES.findall(html)]


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_a_docs_page_loads_only_local_assets_and_each_is_served(client, page):
    response = client.get(page)
    assert response.status_code == 200
    html = response.content.decode()
    assert "://" not in html, "the page names another host"
    assert "@latest" not in html and "cdn" not in html.lower()
    urls = references(html)
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts, "no script found: the page would render blank"
    assert "/api/schema/" in urls
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        served = client.get(url)
        assert served.status_code == 200, url
        body = (b"".join(served.streaming_content) if served.streaming
                else served.content)
        assert body, url
    for url in scripts:  # named by their hash: kept for good, as every static file
        assert re.search(r"\.[0-9a-f]{12}\.js$", url), url
        assert "immutable" in client.get(url)["Cache-Control"]
