"""Declarative specs with webhooks (secrets by secret_env) and schedules: apply, plan, prune, export."""
import base64

import pytest

from autogen_platform.errors import ValidationFailed
from integrations.models import Schedule, Webhook
from integrations.services import webhook_secret
from specs.apply import spec_apply
from specs.export import spec_dump_yaml, spec_export
from specs.reader import spec_load

pytestmark = pytest.mark.django_db

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
SPEC = """
customer: acme
models:
  - name: demo
    provider: replay
    responses: ["Report. TERMINATE"]
agents:
  - name: reporter
    model: demo
teams:
  - name: duo
    members: [reporter]
webhooks:
  - url: https://hooks.example.com/tasks
    events: [task.succeeded, task.failed]
    secret_env: ORDERS_WEBHOOK_SECRET
schedules:
  - name: nightly
    cron: "0 3 * * *"
    timezone: Europe/Paris
    agent: reporter
    input: Nightly report
  - name: hourly-team
    interval_seconds: 3600
    team: duo
    input: Hourly
    enabled: false
"""
ENV = {"ORDERS_WEBHOOK_SECRET": SECRET}


@pytest.fixture
def acme(make_customer):
    return make_customer("acme")[0]


def apply(customer, text, environ=ENV, **options):
    return spec_apply(actor="test", customer=customer, spec=spec_load(text), environ=environ, **options)


def test_a_spec_creates_webhooks_and_schedules_and_the_export_applies_back_as_no_changes(acme):
    result = apply(acme, SPEC)
    assert "create webhook https://hooks.example.com/tasks" in result.lines()
    assert "create schedule nightly" in result.lines() and "create schedule hourly-team" in result.lines()
    webhook = Webhook.objects.get(customer=acme)
    assert webhook.events == ["task.succeeded", "task.failed"] and webhook_secret(webhook) == SECRET
    nightly = Schedule.objects.get(name="nightly")
    assert nightly.agent.name == "reporter" and nightly.timezone == "Europe/Paris" and nightly.next_run_at
    assert Schedule.objects.get(name="hourly-team").team.name == "duo"
    assert apply(acme, SPEC).lines() == [*(line.replace("create", "unchanged") for line in result.lines()[:-1]),
                                         "no changes"]
    exported = spec_dump_yaml(spec_export(acme))
    assert SECRET not in exported and "secret_env: WEBHOOK_SECRET" in exported
    again = apply(acme, exported, environ={"WEBHOOK_SECRET": SECRET})
    assert again.summary_line() == "no changes", again.lines()


def test_a_changed_secret_or_schedule_is_an_update_naming_the_fields(acme):
    apply(acme, SPEC)
    other = "whsec_" + base64.b64encode(b"t" * 32).decode()
    text = SPEC.replace("Nightly report", "Nightly summary")
    result = apply(acme, text, environ={"ORDERS_WEBHOOK_SECRET": other})
    assert "update webhook https://hooks.example.com/tasks (secret)" in result.lines()
    assert "update schedule nightly (input)" in result.lines()
    assert webhook_secret(Webhook.objects.get(customer=acme)) == other


def test_spec_mistakes_name_their_path(acme):
    bad = SPEC.replace("agent: reporter\n    input: Nightly", "agent: ghost\n    input: Nightly").replace(
        "secret_env: ORDERS_WEBHOOK_SECRET", "secret: whsec_abc")
    with pytest.raises(ValidationFailed) as error:
        apply(acme, bad)
    assert "webhooks[0].secret" in error.value.details
    bad = SPEC.replace("agent: reporter\n    input: Nightly", "agent: ghost\n    input: Nightly")
    with pytest.raises(ValidationFailed) as error:
        apply(acme, bad)
    assert "schedules[0].agent" in error.value.details
    with pytest.raises(ValidationFailed) as error:
        apply(acme, SPEC, environ={})
    assert "webhooks[0].secret_env" in error.value.details
    assert not Webhook.objects.exists() and not Schedule.objects.exists()


def test_prune_deletes_schedules_and_webhooks_the_spec_no_longer_names(acme):
    apply(acme, SPEC)
    text = SPEC.split("webhooks:")[0]
    result = apply(acme, text, prune=True)
    assert {"delete schedule nightly", "delete schedule hourly-team",
            "delete webhook https://hooks.example.com/tasks"} <= set(result.lines())
    assert not Webhook.objects.exists() and not Schedule.objects.exists()
