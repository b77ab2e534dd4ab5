"""Every write to webhooks, their deliveries and schedules; sending a delivery; firing due schedules.

Deliveries are an outbox: the rows are written in the transaction that ends the task (one place:
tasks.services.task_finish calls webhooks_task_event), and only once it commits is a job put on the
`webhooks` queue. A delivery worker (`manage.py runwebhooks`) claims the row, signs and sends it,
and records the outcome; failures wait with exponential backoff, and the housekeeping sweep (the
reaper: deliveries_sweep) enqueues them again when due, as it does for jobs Redis lost.
"""
import json
import logging
import random
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.crypto import decrypt, encrypt
from autogen_platform import metrics
from autogen_platform.errors import ApplicationError, Conflict, QuotaExceeded, ValidationFailed
from autogen_platform.naming import unique_name_save
from autogen_platform.redis_clients import web_redis
from core.services import audit_record
from tasks.api.serializers import TaskSerializer
from tasks.models import Task
from tasks.services import task_create

from . import scheduling, signing
from .models import TASK_EVENTS, Schedule, Webhook, WebhookDelivery

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
# How long a delivery worker may hold a claimed delivery beyond the attempt's timeout before the sweep
# takes it back (its worker died mid-attempt).
LEASE_MARGIN_SECONDS = 30
# A queued delivery whose job has not run for this long is enqueued again (Redis lost the job).
QUEUED_LOST_SECONDS = 300
# A delivery that finds its endpoint busy with another delivery waits this long (no attempt counted).
ENDPOINT_BUSY_DELAY_SECONDS = 1.0
# Due deliveries and schedules handled per sweep.
SWEEP_BATCH = 500


# -- webhooks ------------------------------------------------------------------------------------------

def _url_check(url: str) -> None:
    # lazy: runtime.broker loads AutoGen, which the web process loads only when it checks a URL
    from runtime.broker import public_addresses

    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValidationFailed(details={"url": ["An http:// or https:// URL"]})
    if settings.WEBHOOKS_ALLOW_PRIVATE:
        return
    refusal, _ = public_addresses(url)
    # A name that does not resolve yet is accepted (its deliveries fail and retry); a private one is not.
    if refusal and not refusal.startswith("cannot resolve"):
        raise ValidationFailed(details={"url": [refusal]})


def _events_check(events) -> list[str]:
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise ValidationFailed(details={"events": ["A list of event names"]})
    unknown = sorted(set(events) - set(TASK_EVENTS))
    if unknown:
        raise ValidationFailed(details={"events": [f"Unknown events {', '.join(unknown)}; known: {', '.join(TASK_EVENTS)}"]})
    return sorted(set(events), key=TASK_EVENTS.index)


@transaction.atomic
def webhook_create(*, actor, customer, url: str, events=None, description: str = "", enabled: bool = True,
                   secret: str | None = None, request=None) -> tuple[Webhook, str]:
    """A new endpoint; returns it and its signing secret (generated unless given), shown only now."""
    _url_check(url)
    events = _events_check(events if events is not None else list(TASK_EVENTS[:4]))
    if secret is not None and signing.secret_errors(secret):
        raise ValidationFailed(details={"secret": signing.secret_errors(secret)})
    if Webhook.objects.filter(customer=customer).count() >= settings.WEBHOOKS_MAX_PER_CUSTOMER:
        raise QuotaExceeded(f"At most {settings.WEBHOOKS_MAX_PER_CUSTOMER} webhooks per customer (WEBHOOKS_MAX_PER_CUSTOMER)")
    secret = secret or signing.secret_generate()
    webhook = Webhook.objects.create(customer=customer, url=url, events=events, description=description,
                                     enabled=enabled, secret_encrypted=encrypt(secret))
    audit_record(actor=actor, action="webhook.create", target=f"webhook:{webhook.pk}", customer=customer,
                 request=request, details={"url": url, "events": events})
    return webhook, secret


@transaction.atomic
def webhook_update(*, actor, webhook: Webhook, data: dict, request=None) -> Webhook:
    changed = {}
    if "url" in data and data["url"] != webhook.url:
        _url_check(data["url"])
        changed["url"] = webhook.url = data["url"]
    if "events" in data:
        events = _events_check(data["events"])
        if events != webhook.events:
            changed["events"] = webhook.events = events
    for field in ("description", "enabled"):
        if field in data and data[field] != getattr(webhook, field):
            changed[field] = data[field]
            setattr(webhook, field, data[field])
    if "secret" in data and data["secret"] is not None:
        if signing.secret_errors(data["secret"]):
            raise ValidationFailed(details={"secret": signing.secret_errors(data["secret"])})
        if data["secret"] != webhook_secret(webhook):
            webhook.secret_encrypted = encrypt(data["secret"])
            changed["secret"] = "(changed)"
    if changed:
        webhook.save()
        audit_record(actor=actor, action="webhook.update", target=f"webhook:{webhook.pk}", customer=webhook.customer,
                     request=request, details={"changed": sorted(changed)})
    return webhook


@transaction.atomic
def webhook_rotate_secret(*, actor, webhook: Webhook, request=None) -> str:
    """A new signing secret, returned once; deliveries from now on are signed with it."""
    secret = signing.secret_generate()
    webhook.secret_encrypted = encrypt(secret)
    webhook.save(update_fields=["secret_encrypted", "updated_at"])
    audit_record(actor=actor, action="webhook.rotate_secret", target=f"webhook:{webhook.pk}",
                 customer=webhook.customer, request=request)
    return secret


@transaction.atomic
def webhook_delete(*, actor, webhook: Webhook, request=None) -> None:
    audit_record(actor=actor, action="webhook.delete", target=f"webhook:{webhook.pk}", customer=webhook.customer,
                 request=request, details={"url": webhook.url})
    webhook.delete()


def webhook_secret(webhook: Webhook) -> str:
    return decrypt(webhook.secret_encrypted)


def webhooks_task_event(*, task, event: str) -> list[int]:
    """One task's event (e.g. task.input_required): see webhooks_tasks_ended."""
    return webhooks_tasks_ended([(task.pk, task.customer_id, event)], customers={task.customer_id},
                                task_webhooks={task.pk: task.webhook_id})


def webhooks_tasks_ended(ends: list[tuple[int, int, str]], *, customers: set, task_webhooks: dict) -> list[int]:
    """Inside the transaction that moved tasks to their events' statuses ((task id, customer id, event)):
    one delivery per endpoint that wants each event (its events list it, or the task named it), sent once
    the transaction commits. One query when none of the customers has a webhook."""
    if not ends:
        return []
    hooks: dict[int, list[Webhook]] = {}
    for webhook in Webhook.objects.filter(customer_id__in=customers, enabled=True):
        hooks.setdefault(webhook.customer_id, []).append(webhook)
    wanted = [
        (task_id, event, [w for w in hooks.get(customer_id, ()) if event in (w.events or []) or w.pk == task_webhooks.get(task_id)])
        for task_id, customer_id, event in ends
    ]
    wanted = [(task_id, event, targets) for task_id, event, targets in wanted if targets]
    if not wanted:
        return []

    tasks = {t.pk: t for t in Task.objects.filter(pk__in=[task_id for task_id, _, _ in wanted])}
    now = timezone.now()
    rows = []
    for task_id, event, targets in wanted:
        task = tasks.get(task_id)
        if task is None:
            continue
        payload = {
            "type": event,
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "data": json.loads(json.dumps(TaskSerializer(task).data, default=str)),
        }
        rows += [WebhookDelivery(webhook=w, customer_id=task.customer_id, task_id=task_id, event=event,
                                 message_id=f"msg_{uuid.uuid4().hex}", payload=payload, status=Status.QUEUED,
                                 next_attempt_at=now, queued_at=now) for w in targets]
    created = WebhookDelivery.objects.bulk_create(rows)
    ids = [row.pk for row in created]
    if None in ids:  # a backend without RETURNING on bulk_create
        ids = list(WebhookDelivery.objects.filter(message_id__in=[r.message_id for r in rows]).values_list("pk", flat=True))
    transaction.on_commit(lambda: deliveries_enqueue(ids), robust=True)
    return ids


def deliveries_enqueue(ids: list[int]) -> None:
    """Jobs on the `webhooks` queue (bounded Redis timeouts: a lost enqueue is redone by deliveries_sweep)."""
    import django_rq

    if not ids:
        return
    queue = django_rq.get_queue("webhooks", connection=web_redis(settings.RQ_QUEUES["webhooks"]["URL"]))
    with queue.connection.pipeline() as pipe:
        for delivery_id in ids:
            queue.enqueue("integrations.jobs.deliver", delivery_id, result_ttl=0, failure_ttl=3600,
                          job_timeout=int(settings.WEBHOOK_TIMEOUT_SECONDS) + LEASE_MARGIN_SECONDS, pipeline=pipe)
        pipe.execute()


def retry_delay(attempts: int) -> float:
    """Seconds before attempt attempts+1: BASE, 4xBASE, 16xBASE... capped, with +-10% jitter."""
    delay = min(settings.WEBHOOK_RETRY_BASE_SECONDS * 4 ** max(0, attempts - 1), settings.WEBHOOK_RETRY_MAX_SECONDS)
    return delay * random.uniform(0.9, 1.1)


def delivery_attempt(*, delivery_id: int) -> str | None:
    """One attempt at one delivery (a delivery worker's job). Returns the delivery's status after it,
    or None when there was nothing to do (another worker has it, it is done, or not due yet)."""
    # lazy: sender imports runtime.broker (AutoGen), needed only by the delivery workers
    from . import sender

    now = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now),
        pk=delivery_id, status__in=[Status.QUEUED, Status.PENDING],
    ).update(status=Status.SENDING, lease_until=now + timedelta(seconds=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS))
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("webhook").get(pk=delivery_id)
    webhook = delivery.webhook
    if not webhook.enabled:
        return _delivery_record(delivery, status=Status.FAILED, error="The webhook was disabled", count=False)
    lock = _endpoint_lock(webhook.pk)
    if lock is not None and not lock.acquire(blocking=False):
        # Another delivery to this endpoint is under way: a slow endpoint holds one worker, not all of them.
        WebhookDelivery.objects.filter(pk=delivery_id, status=Status.SENDING).update(
            status=Status.PENDING, lease_until=None,
            next_attempt_at=timezone.now() + timedelta(seconds=ENDPOINT_BUSY_DELAY_SECONDS))
        return Status.PENDING
    try:
        body = json.dumps(delivery.payload, separators=(",", ":")).encode()
        try:
            headers = signing.headers(webhook_secret(webhook), delivery.message_id, int(time.time()), body)
        except ValueError:
            return _delivery_record(delivery, status=Status.FAILED, count=False,
                                    error="The signing secret cannot be decrypted (FIELD_ENCRYPTION_KEY changed): set it again")
        try:
            response = sender.post(webhook.url, body, headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                                   allow_private=settings.WEBHOOKS_ALLOW_PRIVATE)
            metrics.webhook_attempt(response.status, response.latency_ms / 1000, timed_out=response.timed_out)
        except sender.Refused as exc:
            return _delivery_record(delivery, status=Status.FAILED, error=f"Refused: {exc}")
    finally:
        if lock is not None:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - it expires on its own
                pass
    if response.error == "":
        return _delivery_record(delivery, status=Status.SUCCEEDED, response=response)
    if delivery.attempts + 1 >= settings.WEBHOOK_MAX_ATTEMPTS:
        return _delivery_record(delivery, status=Status.FAILED, response=response, error=response.error)
    return _delivery_record(delivery, status=Status.PENDING, response=response, error=response.error,
                            next_attempt_at=timezone.now() + timedelta(seconds=retry_delay(delivery.attempts + 1)))


def _endpoint_lock(webhook_id: int):
    import django_rq

    try:
        connection = django_rq.get_connection("webhooks")
        return connection.lock(f"{settings.REDIS_NAMESPACE}:webhook-busy:{webhook_id}",
                               timeout=settings.WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    except Exception:  # noqa: BLE001 - without Redis, send anyway
        return None


def _delivery_record(delivery, *, status, response=None, error="", next_attempt_at=None, count=True) -> str:
    now = timezone.now()
    fields = {
        "status": status,
        "error": (error or "")[:500],
        "next_attempt_at": next_attempt_at,
        "lease_until": None,
        "last_attempt_at": now,
    }
    if count:
        fields["attempts"] = F("attempts") + 1
    if response is not None:
        fields.update(response_status=response.status, latency_ms=response.latency_ms)
    if status == Status.SUCCEEDED:
        fields["delivered_at"] = now
    WebhookDelivery.objects.filter(pk=delivery.pk).update(**fields)
    if status in (Status.SUCCEEDED, Status.FAILED):
        outcome = "succeeded" if status == Status.SUCCEEDED else ("gave_up" if response is not None else "not_sent")
        metrics.webhook_delivery_ended(outcome, delivery.attempts + (1 if count else 0))
    level = logging.INFO if status == Status.SUCCEEDED else logging.WARNING
    logger.log(level, "webhook delivery %s (%s) to webhook %s: %s%s", delivery.pk, delivery.event,
               delivery.webhook_id, status, f" ({error})" if error else "")
    return status


@transaction.atomic
def delivery_resend(*, actor, delivery: WebhookDelivery, request=None) -> WebhookDelivery:
    """Send the message again: a new delivery with the same message id and body (receivers may dedupe)."""
    if not delivery.webhook.enabled:
        raise Conflict("The webhook is disabled: enable it before re-sending")
    now = timezone.now()
    again = WebhookDelivery.objects.create(
        webhook=delivery.webhook, customer_id=delivery.customer_id, task_id=delivery.task_id, event=delivery.event,
        message_id=delivery.message_id, payload=delivery.payload, status=Status.QUEUED, next_attempt_at=now,
        queued_at=now, resent_from=delivery,
    )
    audit_record(actor=actor, action="webhook.resend", target=f"webhook:{delivery.webhook_id}",
                 customer=delivery.webhook.customer, request=request,
                 details={"delivery": delivery.pk, "new_delivery": again.pk})
    transaction.on_commit(lambda: deliveries_enqueue([again.pk]), robust=True)
    return again


def deliveries_sweep() -> list[int]:
    """The housekeeping pass (reaper): take back deliveries whose worker died mid-attempt, and enqueue
    those due again (retries whose backoff has passed, jobs Redis lost). Several sweepers may run:
    each delivery is moved to `queued` by one conditional UPDATE, and a job only acts on a claim."""
    now = timezone.now()
    WebhookDelivery.objects.filter(status=Status.SENDING, lease_until__lt=now).update(
        status=Status.PENDING, lease_until=None, next_attempt_at=now, error="The delivery worker was lost mid-attempt")
    lost_cutoff = now - timedelta(seconds=QUEUED_LOST_SECONDS)
    candidates = list(
        WebhookDelivery.objects.filter(
            Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.QUEUED, queued_at__lt=lost_cutoff)
        ).order_by("next_attempt_at").values_list("pk", "status", "queued_at")[:SWEEP_BATCH]
    )
    taken = []
    for pk, status, queued_at in candidates:
        if WebhookDelivery.objects.filter(pk=pk, status=status, queued_at=queued_at).update(
                status=Status.QUEUED, queued_at=now):
            taken.append(pk)
    if taken:
        try:
            deliveries_enqueue(taken)
        except Exception:  # noqa: BLE001 - they stay queued; enqueued again after QUEUED_LOST_SECONDS
            logger.warning("could not enqueue %s webhook deliveries", len(taken), exc_info=True)
    # the record of finished deliveries is kept WEBHOOK_DELIVERY_RETENTION_DAYS, then purged a batch per sweep
    old = WebhookDelivery.objects.filter(
        status__in=[Status.SUCCEEDED, Status.FAILED],
        created_at__lt=now - timedelta(days=settings.WEBHOOK_DELIVERY_RETENTION_DAYS),
    ).values_list("pk", flat=True)[:SWEEP_BATCH]
    WebhookDelivery.objects.filter(pk__in=list(old)).delete()
    return taken


# -- schedules -----------------------------------------------------------------------------------------

def _schedule_check(schedule: Schedule) -> None:
    errors = {}
    if bool(schedule.cron) == bool(schedule.interval_seconds):
        errors["non_field_errors"] = ["Give exactly one of cron and interval_seconds"]
    elif schedule.cron:
        problems = scheduling.cron_errors(schedule.cron)
        if problems:
            errors["cron"] = problems
    elif schedule.interval_seconds < settings.SCHEDULE_MIN_INTERVAL_SECONDS:
        errors["interval_seconds"] = [f"At least {settings.SCHEDULE_MIN_INTERVAL_SECONDS} (SCHEDULE_MIN_INTERVAL_SECONDS)"]
    problems = scheduling.timezone_errors(schedule.timezone)
    if problems:
        errors["timezone"] = problems
    if (schedule.agent_id is None) == (schedule.team_id is None):
        errors.setdefault("non_field_errors", []).append("Give exactly one of agent or team")
    for field in ("agent", "team", "thread"):
        obj = getattr(schedule, field)
        if obj is not None and obj.customer_id != schedule.customer_id:
            errors[field] = ["Not found"]
    if schedule.thread is not None and (schedule.thread.agent_id, schedule.thread.team_id) != (schedule.agent_id, schedule.team_id):
        errors["thread"] = ["This thread belongs to another agent or team"]
    if not isinstance(schedule.input, str) or len(schedule.input) > settings.MAX_TASK_INPUT_CHARS:
        errors["input"] = [f"A string of at most {settings.MAX_TASK_INPUT_CHARS} characters (MAX_TASK_INPUT_CHARS)"]
    if errors:
        raise ValidationFailed(details=errors)


def _schedule_plan(schedule: Schedule, now=None) -> None:
    """An enabled schedule's next firing from now on; a paused one has none."""
    now = now or timezone.now()
    schedule.next_run_at = scheduling.next_runs(
        cron=schedule.cron, interval_seconds=schedule.interval_seconds, tz=schedule.timezone, after=now,
    )[0] if schedule.enabled else None


def _schedule_save(schedule: Schedule) -> None:
    unique_name_save(schedule, label="A schedule")


SCHEDULE_FIELDS = ("name", "cron", "interval_seconds", "timezone", "agent", "team", "input", "thread", "enabled")


@transaction.atomic
def schedule_create(*, actor, customer, request=None, **data) -> Schedule:
    if Schedule.objects.filter(customer=customer).count() >= settings.SCHEDULES_MAX_PER_CUSTOMER:
        raise QuotaExceeded(f"At most {settings.SCHEDULES_MAX_PER_CUSTOMER} schedules per customer (SCHEDULES_MAX_PER_CUSTOMER)")
    schedule = Schedule(customer=customer, created_by=actor if getattr(actor, "pk", None) else None,
                        **{k: v for k, v in data.items() if k in SCHEDULE_FIELDS})
    schedule.cron = schedule.cron or ""
    _schedule_check(schedule)
    _schedule_plan(schedule)
    _schedule_save(schedule)
    audit_record(actor=actor, action="schedule.create", target=f"schedule:{schedule.pk}", customer=customer,
                 request=request, details={"name": schedule.name, "cron": schedule.cron,
                                           "interval_seconds": schedule.interval_seconds})
    return schedule


@transaction.atomic
def schedule_update(*, actor, schedule: Schedule, data: dict, request=None) -> Schedule:
    schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
    changed = sorted(k for k in data if k in SCHEDULE_FIELDS and getattr(schedule, k) != data[k])
    for key in changed:
        setattr(schedule, key, data[key])
    if "cron" in data and data["cron"] and "interval_seconds" not in data:
        schedule.interval_seconds = None
    if "interval_seconds" in data and data["interval_seconds"] and "cron" not in data:
        schedule.cron = ""
    if "agent" in data and data["agent"] is not None and "team" not in data:
        schedule.team = None
    if "team" in data and data["team"] is not None and "agent" not in data:
        schedule.agent = None
    schedule.cron = schedule.cron or ""
    _schedule_check(schedule)
    if set(changed) & {"cron", "interval_seconds", "timezone", "enabled"}:
        _schedule_plan(schedule)
    _schedule_save(schedule)
    if changed:
        action = {("enabled",): "schedule.resume" if schedule.enabled else "schedule.pause"}.get(tuple(changed), "schedule.update")
        audit_record(actor=actor, action=action, target=f"schedule:{schedule.pk}", customer=schedule.customer,
                     request=request, details={"changed": changed})
    return schedule


@transaction.atomic
def schedule_delete(*, actor, schedule: Schedule, request=None) -> None:
    audit_record(actor=actor, action="schedule.delete", target=f"schedule:{schedule.pk}", customer=schedule.customer,
                 request=request, details={"name": schedule.name})
    schedule.delete()


def schedule_upcoming(schedule: Schedule, count: int = 5) -> list:
    """The schedule's next `count` firing times (none while it is paused)."""
    if not schedule.enabled or schedule.next_run_at is None:
        return []
    rest = scheduling.next_runs(cron=schedule.cron, interval_seconds=schedule.interval_seconds, tz=schedule.timezone,
                                after=schedule.next_run_at, count=count - 1)
    return [schedule.next_run_at, *rest]


def schedules_fire_due(*, now=None) -> list[int]:
    """Fire every enabled schedule whose next_run_at has come: one ordinary task each (task_create:
    killswitch, agent state, quotas and the audit row apply), exactly once whichever nodes run this.

    The lease is the row itself: next_run_at moves on with an UPDATE conditioned on the value read,
    in the transaction that creates the task, so of two schedulers only one updates the row (the
    other's UPDATE waits for that commit and then matches nothing). Missed firings (downtime) are not
    replayed: one firing now, then the next future time (scheduling.next_after_firing). A firing that
    cannot create its task (quota, killswitch, stopped agent) is skipped; last_error says why."""
    now = now or timezone.now()
    due = list(
        Schedule.objects.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at")
        .values_list("pk", "next_run_at")[:SWEEP_BATCH]
    )
    fired = []
    for pk, planned in due:
        with transaction.atomic():
            schedule = Schedule.objects.select_related("customer", "agent", "team", "thread").filter(pk=pk).first()
            if schedule is None:
                continue
            following = scheduling.next_after_firing(cron=schedule.cron, interval_seconds=schedule.interval_seconds,
                                                     tz=schedule.timezone, planned=planned, now=now)
            if not Schedule.objects.filter(pk=pk, enabled=True, next_run_at=planned).update(
                    next_run_at=following, last_run_at=now):
                continue  # another scheduler fired it, or it was paused or changed meanwhile
            error, task = None, None
            if schedule.customer.deleted_at is not None:
                error = {"code": "not_found", "message": "The customer was deleted"}
            else:
                try:
                    with transaction.atomic():
                        task, created = task_create(
                            actor=f"schedule:{pk}", customer=schedule.customer, input=schedule.input,
                            agent=schedule.agent, team=schedule.team, thread=schedule.thread, schedule=schedule,
                            idempotency_key=f"schedule-{pk}-{planned.isoformat()}",
                        )
                    if not created:  # this very firing already made its task
                        continue
                except ApplicationError as exc:
                    error = {"code": exc.code, "message": str(exc.message)}
            Schedule.objects.filter(pk=pk).update(last_error=error, last_task=task)
            if task is not None:
                fired.append(task.pk)
            else:
                logger.warning("schedule %s fired without a task: %s", pk, error)
    return fired
