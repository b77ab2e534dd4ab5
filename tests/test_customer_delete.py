"""Deleting a customer is a soft delete: access ends at once, running work stops, the record stays for
CUSTOMER_RETENTION_DAYS and is then purged in bounded batches (by the reaper)."""
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Customer
from accounts.services import api_key_create
from core.models import AuditLog
from tasks.models import Task, TaskEvent
from tasks.purge import customer_purge_deleted
from tests.api_support import assert_error, make_agent, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def doomed(make_customer, client_for):
    customer, owner = make_customer("doomed", role="owner")
    agent = make_agent(customer, name="doomed-agent")
    tasks = [make_task(owner, agent=agent, input=f"t{i}") for i in range(3)]
    _, raw_key = api_key_create(actor=owner, name="ci")
    return customer, owner, tasks, client_for(owner), raw_key


def test_delete_ends_access_and_work_but_keeps_the_record(admin_api, doomed):
    customer, owner, tasks, client, raw_key = doomed
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    assert client.get("/api/me/").status_code == 200 and keyed.get("/api/me/").status_code == 200

    response = admin_api.delete(f"/api/admin/customers/{customer.pk}/")

    assert response.status_code == 204
    # the customer is gone for everyone
    assert_error(admin_api.get(f"/api/admin/customers/{customer.pk}/"), 404, "not_found")
    assert customer.pk not in [c["id"] for c in admin_api.get("/api/admin/customers/").json()["results"]]
    assert_error(admin_api.delete(f"/api/admin/customers/{customer.pk}/"), 404, "not_found")
    assert client.get("/api/me/").status_code == 401
    assert keyed.get("/api/me/").status_code == 401
    # its queued work ended; nothing it stored was deleted yet
    assert set(Task.objects.filter(customer=customer).values_list("status", flat=True)) == {"cancelled"}
    assert TaskEvent.objects.filter(task__customer=customer).count() >= 3 * 2
    stored = Customer.objects.get(pk=customer.pk)
    assert stored.deleted_at is not None
    row = AuditLog.objects.get(action="customer.delete", target=f"customer:{customer.pk}")
    assert row.details["name"] == "doomed" and "purge_after" in row.details


@override_settings(CUSTOMER_RETENTION_DAYS=30)
def test_a_deleted_customer_is_purged_after_its_retention_in_batches(admin_api, doomed, make_customer):
    customer, owner, tasks, client, raw_key = doomed
    kept, _ = make_customer("kept")
    assert admin_api.delete(f"/api/admin/customers/{customer.pk}/").status_code == 204

    # within the retention nothing is purged
    assert customer_purge_deleted() == 0
    assert Task.objects.filter(customer=customer).count() == 3

    # past it, every pass deletes a bounded batch of tasks until the customer itself goes
    Customer.objects.filter(pk=customer.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    assert customer_purge_deleted(batch=2) == 2
    assert Task.objects.filter(customer=customer).count() == 1
    customer_purge_deleted(batch=2)
    assert not Customer.objects.filter(pk=customer.pk).exists()
    assert not Task.objects.filter(customer_id=customer.pk).exists()
    assert not TaskEvent.objects.filter(task_id__in=[t.pk for t in tasks]).exists()
    assert Customer.objects.filter(pk=kept.pk).exists()
    assert AuditLog.objects.filter(action="customer.purge", target=f"customer:{customer.pk}").exists()
