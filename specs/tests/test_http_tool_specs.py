"""HTTP tools in declarative specs: secret headers by `secret_headers_env`, never in a spec or an export; the
allow-list holds on apply; an export applies back as no changes."""
import pytest
import yaml

from accounts.crypto import decrypt
from accounts.models import Customer
from agents.models import Tool
from autogen_platform.errors import ValidationFailed
from specs.apply import spec_apply
from specs.export import spec_dump_yaml, spec_export
from specs.reader import spec_load

pytestmark = pytest.mark.django_db

SPEC = """
tools:
  - name: order_status
    kind: http
    description: The status of an order.
    parameters: {type: object, properties: {order_id: {type: string}}, required: [order_id]}
    method: GET
    url: https://api.example.com/v1/orders/{order_id}
    headers: {Accept: application/json}
    secret_headers_env: {Authorization: ORDERS_AUTH}
"""
ENV = {"ORDERS_AUTH": "Bearer orders-secret-1"}


@pytest.fixture
def acme(make_customer):
    customer, _ = make_customer("acme")
    Customer.objects.filter(pk=customer.pk).update(http_tool_hosts=["api.example.com"])
    customer.refresh_from_db()
    return customer


def apply(customer, text, *, environ=ENV, **options):
    return spec_apply(actor="test", customer=customer, spec=spec_load(text), environ=environ, **options)


def test_an_http_tool_applies_with_its_secret_header_from_the_environment_and_exports_without_it(acme, settings):
    settings.HTTP_TOOLS_ALLOW_PRIVATE = True  # no DNS lookup of api.example.com offline
    apply(acme, SPEC)
    tool = Tool.objects.get(customer=acme, name="order_status")
    assert (tool.kind, tool.method, tool.arguments_in, tool.headers) == ("http", "GET", "query", {"Accept": "application/json"})
    assert decrypt(tool.secret_headers_encrypted["Authorization"]) == "Bearer orders-secret-1"
    assert apply(acme, SPEC).summary_line() == "no changes"
    # a new value is an update of the secret headers only, and no new version of the tool
    changed = apply(acme, SPEC, environ={"ORDERS_AUTH": "Bearer orders-secret-2"})
    assert "update tool order_status (secret_headers)" in changed.lines()
    assert Tool.objects.get(pk=tool.pk).version == 1

    exported = spec_dump_yaml(spec_export(acme))

    assert "orders-secret" not in exported
    assert "secret headers are never exported" in exported
    item = yaml.safe_load(exported)["tools"][0]
    assert item["secret_headers_env"] == {"Authorization": "ORDER_STATUS_AUTHORIZATION"}
    again = apply(acme, exported, environ={"ORDER_STATUS_AUTHORIZATION": "Bearer orders-secret-2"}, prune=True)
    assert again.summary_line() == "no changes", again.lines()
    # a spec without the header removes it (a new definition: the tool's version moves)
    removed = apply(acme, SPEC.replace("    secret_headers_env: {Authorization: ORDERS_AUTH}\n", ""))
    assert "update tool order_status (secret_headers)" in removed.lines()
    tool = Tool.objects.get(pk=tool.pk)
    assert tool.secret_headers_encrypted == {} and tool.version == 2


@pytest.mark.parametrize("text, path, message", [
    (SPEC.replace("api.example.com", "evil.example.org"), "tools[0].url", "not on this customer's allow-list"),
    (SPEC.replace("secret_headers_env: {Authorization: ORDERS_AUTH}", "secret_headers: {Authorization: x}"),
     "tools[0].secret_headers", "secrets never stand in a spec"),
    (SPEC.replace("ORDERS_AUTH}", "MISSING_VAR}"), "tools[0].secret_headers_env.Authorization",
     "environment variable MISSING_VAR is not set"),
    (SPEC.replace("    kind: http\n", ""), "tools[0].url", "http tools only"),
])
def test_http_tool_mistakes_name_their_spec_path(acme, settings, text, path, message):
    settings.HTTP_TOOLS_ALLOW_PRIVATE = True
    with pytest.raises(ValidationFailed) as raised:
        apply(acme, text)
    assert any(message in m for m in raised.value.details[path]), raised.value.details
    assert not Tool.objects.filter(customer=acme).exists()
