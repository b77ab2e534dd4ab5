"""Swagger UI (/api/docs/) and Redoc (/api/redoc/) render on a machine without internet: every script,
stylesheet and icon they reference is served by the platform itself (drf-spectacular-sidecar), from a real
daphne as `make run` serves it."""
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

pytestmark = [pytest.mark.django_db(transaction=True)]


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.urls.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.urls.append(attrs["src"])


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_load_every_asset_from_the_platform(daphne_server, page):
    base = daphne_server.http_url
    status, content_type, body = _get(base + page)
    assert status == 200 and content_type.startswith("text/html")
    html = body.decode()
    parser = _Assets()
    parser.feed(html)
    assert len([u for u in parser.urls if u.endswith(".js") or ".js?" in u or "script" in u]) >= 1, parser.urls
    for url in parser.urls:
        absolute = urljoin(base + page, url)
        # nothing from another host (no CDN)
        assert urlsplit(absolute).netloc == urlsplit(base).netloc, f"{page} loads {url} from elsewhere"
        status, _, asset = _get(absolute)
        assert status == 200 and asset, url
    # the schema the page loads is the platform's own, too
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    status, _, schema = _get(base + "/api/schema/?format=json")
    assert status == 200 and b'"openapi"' in schema
