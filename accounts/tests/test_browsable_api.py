"""The DRF browsable API for a user logged in with a session: the root lists everything, pages and forms render."""
import pytest

from tests.api_support import make_tenant

pytestmark = pytest.mark.django_db


def test_a_logged_in_user_browses_and_posts_through_the_html_api(make_customer, client):
    tenant = make_tenant(make_customer, "acme")
    # the browsable API's own login form
    login = client.post("/api-auth/login/", {"username": tenant.owner.username, "password": "password123",
                                             "next": "/api/"})
    assert login.status_code == 302 and login["Location"] == "/api/"

    root = client.get("/api/", HTTP_ACCEPT="text/html")
    assert root.status_code == 200
    for link in ("/api/agents/", "/api/models/", "/api/teams/", "/api/tasks/", "/api/me/", "/api/tools/"):
        assert link in root.content.decode()
    for url in ("/api/agents/", f"/api/agents/{tenant.agent.pk}/", "/api/models/", "/api/teams/", "/api/tasks/",
                f"/api/tasks/{tenant.task.pk}/", "/api/threads/", "/api/api-keys/", "/api/notifications/",
                "/api/me/", "/api/tools/"):
        page = client.get(url, HTTP_ACCEPT="text/html")
        assert page.status_code == 200, url
        assert b"<html" in page.content
    # The page's form is the raw JSON one: the API takes JSON bodies only (forms dropped nested fields).
    page = client.get("/api/agents/", HTTP_ACCEPT="text/html").content.decode()
    assert 'name="_content"' in page and "application/json" in page

    # What that form posts (session + CSRF are enforced for real browsers; the test client skips CSRF checks).
    created = client.post("/api/models/", {"name": "from-form", "provider": "replay", "responses": ["hi"]},
                          content_type="application/json", HTTP_ACCEPT="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["responses"] == ["hi"]
    # A form post is refused in the envelope rather than stored with its nested fields dropped.
    refused = client.post("/api/models/", {"name": "form", "provider": "replay", "responses": ["hi"]},
                          HTTP_ACCEPT="application/json")
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
