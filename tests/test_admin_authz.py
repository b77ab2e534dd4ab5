"""Authorization matrix over every admin endpoint: only an admin token AND the right X-Admin-Key open them."""
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from conftest import token_for
from tests.admin_support import make_agent

# (method, path with {customer}/{agent} placeholders, body, status with the right credentials)
ENDPOINTS = [
    ("get", "/api/admin/stats/", None, 200),
    ("get", "/api/admin/customers/", None, 200),
    ("post", "/api/admin/customers/", {"name": "newco"}, 201),
    ("get", "/api/admin/customers/{customer}/", None, 200),
    ("patch", "/api/admin/customers/{customer}/", {"quotas": {"max_agents": 3}}, 200),
    ("put", "/api/admin/customers/{customer}/", {"name": "renamed"}, 200),
    ("delete", "/api/admin/customers/{customer}/", None, 204),
    ("get", "/api/admin/agents/", None, 200),
    ("post", "/api/admin/agents/{agent}/stop/", None, 200),
    ("post", "/api/admin/broadcast/", {"message": "maintenance at noon", "level": "warning"}, 201),
    ("get", "/api/admin/killswitch/", None, 200),
    ("post", "/api/admin/killswitch/", {"engaged": True, "customer": "{customer}", "reason": "matrix"}, 200),
    ("get", "/api/admin/audit/", None, 200),
    ("get", "/api/admin/runtime/", None, 200),
]
IDS = [f"{m.upper()} {p}" for m, p, _, _ in ENDPOINTS]


@pytest.fixture
def world(make_customer, staff_user):
    customer, user = make_customer("acme")
    agent = make_agent(customer)
    return {"customer": customer, "agent": agent, "customer_user": user, "staff": staff_user}


def _call(client, method, path, body, world):
    path = path.format(customer=world["customer"].pk, agent=world["agent"].pk)
    if isinstance(body, dict) and body.get("customer") == "{customer}":
        body = {**body, "customer": world["customer"].pk}
    return getattr(client, method)(path, body, format="json") if body is not None else getattr(client, method)(path)


def _client(token=None, key=None):
    client = APIClient()
    headers = {}
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    if key is not None:
        headers["HTTP_X_ADMIN_KEY"] = key
    client.credentials(**headers)
    return client


def _assert_error(response, status, codes):
    assert response.status_code == status, (response.status_code, response.content)
    assert response.json()["error"]["code"] in codes


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_anonymous_is_not_authenticated(method, path, body, ok, world):
    _assert_error(_call(_client(), method, path, body, world), 401, {"not_authenticated"})
    # the key alone opens nothing either
    _assert_error(_call(_client(key=settings.ADMIN_API_KEY), method, path, body, world), 401, {"not_authenticated"})


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_customer_token_never_opens_the_admin_api(method, path, body, ok, world):
    token = token_for(world["customer_user"])
    _assert_error(_call(_client(token), method, path, body, world), 401, {"token_invalid"})
    # not even with the right admin key
    _assert_error(_call(_client(token, settings.ADMIN_API_KEY), method, path, body, world), 401, {"token_invalid"})


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_admin_token_without_key_is_denied(method, path, body, ok, world):
    token = token_for(world["staff"], scope="admin")
    _assert_error(_call(_client(token), method, path, body, world), 403, {"permission_denied"})


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_admin_token_with_wrong_key_is_denied(method, path, body, ok, world):
    token = token_for(world["staff"], scope="admin")
    for wrong in ("wrong-key", settings.ADMIN_API_KEY + "x", settings.ADMIN_API_KEY[:-1]):
        _assert_error(_call(_client(token, wrong), method, path, body, world), 403, {"permission_denied"})


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_admin_token_with_right_key_is_served(method, path, body, ok, world):
    token = token_for(world["staff"], scope="admin")
    response = _call(_client(token, settings.ADMIN_API_KEY), method, path, body, world)
    assert response.status_code == ok, response.content


@pytest.mark.parametrize("method,path,body,ok", ENDPOINTS, ids=IDS)
def test_admin_scoped_token_of_a_non_staff_user_is_refused(method, path, body, ok, world):
    # a token forged with the admin scope for a customer's user (e.g. a leaked signing key would be worse;
    # this is the case of a demoted admin whose token is still valid)
    token = token_for(world["customer_user"], scope="admin")
    _assert_error(_call(_client(token, settings.ADMIN_API_KEY), method, path, body, world), 401, {"token_invalid"})
