"""Every write to tasks, threads and task events."""
import contextvars
import logging
from contextlib import contextmanager, nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Customer, CustomerUsage
from accounts.services import customer_notices_publish, customer_usage_add
from autogen_platform import metrics, realtime, tracing
from autogen_platform.errors import ApplicationError, Conflict, KillswitchEngaged, NotFound, ValidationFailed
from autogen_platform.redis_clients import web_redis
from autogen_platform.sql import Names
from core.selectors import GLOBAL_SCOPE, killswitch_scope, killswitch_scope_engaged
from core.services import audit_record
from runtime.outcomes import REQUEUE, ErrorCode, StopReason, failed, stop_outcome
from runtime.services import sandbox_kill, sandbox_kill_scope

from . import signals
from .models import Task, TaskEvent, Thread
from .quotas import quota_check_task_create
from .selectors import agent_tasks_in_flight

logger = logging.getLogger(__name__)

# A thread's tasks that hold it: a task waiting for input does not (it has no process and no state in use).
QUEUED_OR_RUNNING = (Task.Status.QUEUED, Task.Status.RUNNING)
# What POST /api/tasks/ does on a thread that has an unfinished task.
MULTITASK_STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")


def task_job_id(task_id: int, attempts: int, requeues: int) -> str:
    """The RQ job id of the task's current job: unique per attempt and per re-enqueue."""
    return f"task-{task_id}-{attempts}" + (f"-{requeues}" if requeues else "")


def task_enqueue(task_id: int, job_id: str | None = None) -> None:
    """Put the task's job on the RQ queue; job_id defaults to the task's current one.

    Redis is asked with bounded timeouts (REDIS_WEB_TIMEOUT_SECONDS): a hung Redis raises soon, and a
    queued task without a job is enqueued again by the reaper (task_requeue_orphans).
    """
    import django_rq

    if job_id is None:
        attempts, requeues = Task.objects.filter(pk=task_id).values_list("attempts", "requeues").first() or (0, 0)
        job_id = task_job_id(task_id, attempts, requeues)
    connection = web_redis(settings.RQ_QUEUES["default"]["URL"])
    django_rq.get_queue("default", connection=connection).enqueue(
        "tasks.jobs.run_task", task_id, job_id=job_id, job_timeout=-1, failure_ttl=3600
    )


def build_task_spec(*, agent=None, team=None) -> dict:
    """Freeze what the task runs: each agent's current version snapshot, and the team's shape."""
    if agent is not None:
        return {"kind": "agent", "agents": [_agent_entry(agent)]}
    members = [m.agent for m in team.members.select_related("agent").order_by("position")]
    return {
        "kind": "team",
        "team": {
            "id": team.pk,
            "name": team.name,
            "version": team.version,
            "mode": team.mode,
            "selector_model": team.selector_model_id,
            "orchestrator_model": team.orchestrator_model_id,
            "termination": dict(team.termination),
            "graph": dict(team.graph or {}),
        },
        "agents": [_agent_entry(a) for a in members],
    }


def task_member_versions(task) -> list[dict]:
    """A team task's members as it runs them, from its frozen spec: [{agent, name, version}] in speaking order."""
    spec = task.spec if isinstance(task.spec, dict) else {}
    if spec.get("kind") != "team":
        return []
    return [{"agent": a.get("id"), "name": a.get("name", ""), "version": a.get("version")}
            for a in spec.get("agents") or [] if isinstance(a, dict)]


def _agent_entry(agent) -> dict:
    return {
        "id": agent.pk,
        "name": agent.name,
        "description": agent.description,
        "version": agent.version,
        **agent.behaviour(),
    }


@transaction.atomic
def task_create(*, actor, customer, input: str, agent=None, team=None, thread=None, idempotency_key=None, request=None,
                webhook=None, schedule=None, multitask_strategy: str = "enqueue"):
    """Persist a queued task and enqueue it on commit. Returns (task, created).

    On a thread with an unfinished task, multitask_strategy says what happens: `reject` (409),
    `enqueue` (the task waits for the thread: it starts when the tasks before it ended), `interrupt`
    (those tasks are stopped, ending `cancelled`, and this one starts from the thread's saved state)
    or `rollback` (as interrupt, and the stopped tasks are deleted with their events).

    webhook: one of the customer's webhooks that is told of this task's end whatever its events list;
    schedule: the schedule firing it (integrations.services.schedules_fire_due)."""
    if idempotency_key:
        existing = Task.objects.filter(customer=customer, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    if (agent is None) == (team is None):
        raise ValidationFailed(details={"non_field_errors": ["Give exactly one of agent or team"]})
    if not isinstance(input, str) or len(input) > settings.MAX_TASK_INPUT_CHARS:
        raise ValidationFailed(details={"input": [
            f"A string of at most {settings.MAX_TASK_INPUT_CHARS} characters (MAX_TASK_INPUT_CHARS)"]})
    if killswitch_scope_engaged(customer.pk):
        raise KillswitchEngaged()
    stopped = _stopped_agents(agent=agent, team=team)
    if stopped and agent is not None:
        raise Conflict(f"Agent {agent.name!r} is stopped: start it before submitting tasks")
    if stopped:
        raise Conflict(f"Team members are stopped: {', '.join(stopped)}")
    if team is not None and not team.members.exists():
        raise Conflict("The team has no members")
    quota_check_task_create(customer)
    new_thread = thread is None
    if new_thread:
        thread = Thread.objects.create(customer=customer, agent=agent, team=team)
    elif thread.customer_id != customer.pk:
        raise NotFound("Thread not found")
    elif (thread.agent_id, thread.team_id) != (getattr(agent, "pk", None), getattr(team, "pk", None)):
        raise ValidationFailed(details={"thread": ["This thread belongs to another agent or team"]})
    if webhook is not None and webhook.customer_id != customer.pk:
        raise ValidationFailed(details={"webhook": ["Unknown webhook"]})
    if multitask_strategy not in MULTITASK_STRATEGIES:
        raise ValidationFailed(details={"multitask_strategy": [f"One of: {', '.join(MULTITASK_STRATEGIES)}"]})
    busy = False if new_thread else _thread_busy(thread, multitask_strategy, actor=actor, request=request)
    trace = tracing.task_creation()  # the task's trace: under this request's span, continued by the worker
    try:
        # a savepoint only where a concurrent retry can collide on the idempotency key
        with transaction.atomic() if idempotency_key else nullcontext():
            task = Task.objects.create(
                traceparent=trace.traceparent,
                customer=customer,
                created_by=actor if getattr(actor, "pk", None) else None,
                agent=agent,
                agent_version=agent.version if agent is not None else None,
                team=team,
                team_version=team.version if team is not None else None,
                thread=thread,
                input=input,
                idempotency_key=idempotency_key or None,
                spec=build_task_spec(agent=agent, team=team),
                webhook=webhook,
                schedule=schedule,
                waits_for_thread=busy,
                last_seq=1,
            )
    except IntegrityError:
        trace.end(None)
        if not idempotency_key:
            raise
        existing = Task.objects.filter(customer=customer, idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    trace.end(task.pk, customer.pk)
    customer_usage_add(task_usage_change({}, task, tasks=1))  # what quota_check_task_create reads
    # Its first event: seq 1 of a row created in this transaction (no need to lock it for the next seq).
    TaskEvent.objects.create(task=task, seq=1, type=TaskEvent.Type.STATUS, content={"status": task.status})
    transaction.on_commit(lambda: metrics.events_written(1))
    audit_record(actor=actor, action="task.create", target=f"task:{task.pk}", customer=customer, request=request)
    if busy:
        pass  # no job: the thread's running task, when it ends, starts it (_thread_start_next)
    elif _starting(customer.pk).exclude(pk=task.pk).count() >= customer.max_concurrent_tasks:
        # Its customer cannot start it now: it waits without a job (woken FIFO when a slot frees), so a
        # customer's backlog never stands in the queue in front of other customers' tasks.
        _wait_for_slot(task.pk, customer.pk)
    else:
        # The task is committed whatever Redis does now: a failed enqueue is logged and the reaper
        # enqueues the task later (TASK_REQUEUE_SECONDS); the caller gets its 201, never a 500 to retry.
        transaction.on_commit(lambda: task_enqueue(task.pk, task_job_id(task.pk, 0, 0)), robust=True)
    # Stored with the task, so the customer's stream has `queued` before a worker's `running`. No frame on the
    # task's own group: nobody can follow a task before this commit makes it visible (a socket that opens then
    # reads its events, `queued` included, from the database).
    _announce_with_changes([(customer.pk, task.pk, task.status)], task_frames=False)
    return task, True


def task_create_many(*, actor, customer, items: list[dict], idempotency_key=None, request=None):
    """Several tasks in one transaction, all or none (POST /api/tasks/batch/). Returns (tasks, created).

    Each item is task_create's keywords (agent or team, input, thread, webhook, multitask_strategy) and goes
    through task_create itself: the same checks, quotas (the batch's earlier tasks count), FIFO and enqueue on
    commit. Their status notices are stored in one write. An item refused refuses the batch with its error,
    which names it (details.task: its index, from 0). idempotency_key: item i gets `KEY#i`, so a retry of the
    same batch returns the same tasks; created is False when every one of them came back that way."""
    tasks, created_any = [], False
    with transaction.atomic(), announcements_together():
        for index, item in enumerate(items):
            key = f"{idempotency_key}#{index}" if idempotency_key else None
            try:
                task, created = task_create(actor=actor, customer=customer, idempotency_key=key, request=request,
                                            **item)
            except ApplicationError as exc:
                exc.message = f"Task {index} of the batch: {exc.message}"
                exc.details = {**exc.details, "task": index}
                raise
            tasks.append(task)
            created_any = created_any or created
    return tasks, created_any


def _stopped_agents(*, agent=None, team=None) -> list[str]:
    """The names of the stopped agents a task of this agent or team would run (sorted): no task of theirs starts."""
    agents = [agent] if agent is not None else list(team.agents.all()) if team is not None else []
    return sorted(a.name for a in agents if a.status != a.Status.ACTIVE)


def _starting(customer_id: int):
    """The customer's tasks that run or have a job on the way to a worker."""
    return Task.objects.filter(customer_id=customer_id).filter(
        Q(status=Task.Status.RUNNING) | Q(status=Task.Status.QUEUED, waiting_since__isnull=True, waits_for_thread=False)
    )


def _thread_busy(thread: Thread, strategy: str, *, actor, request) -> bool:
    """Apply the multitask strategy to the thread's unfinished tasks; True when the new task must wait for them.

    The thread's row is locked, so two tasks submitted to one thread at once are ordered."""
    Thread.objects.select_for_update().filter(pk=thread.pk).first()
    unfinished = list(Task.objects.filter(thread=thread, status__in=QUEUED_OR_RUNNING).order_by("created_at", "pk"))
    if not unfinished:
        return False
    if strategy == "reject":
        raise Conflict("The thread has an unfinished task (multitask_strategy: reject)",
                       details={"thread": thread.pk, "tasks": [t.pk for t in unfinished]})
    if strategy == "enqueue":
        return True
    rollback = strategy == "rollback"
    for task in unfinished:
        audit_record(actor=actor, action=f"task.{strategy}", target=f"task:{task.pk}", customer=task.customer,
                     request=request)
        if task.status == Task.Status.RUNNING:
            # it ends `cancelled` as soon as its worker has killed it (and, for a rollback, is deleted then)
            task_request_stop(task=task, reason=StopReason(strategy))
        elif rollback:
            task.delete()
            customer_usage_add(task_usage_change({}, task, tasks=-1, tokens=-task.tokens_used))  # it counts no more
        else:
            outcome = stop_outcome(StopReason.INTERRUPT)
            task_finish(task_id=task.pk, status=outcome.status, error=outcome.error)
    return any(t.status == Task.Status.RUNNING for t in unfinished)


def _thread_start_next(thread_id: int) -> int | None:
    """Once the thread has no task running or on its way, start its oldest task waiting for it."""
    if Task.objects.filter(thread_id=thread_id, status__in=QUEUED_OR_RUNNING, waits_for_thread=False).exists():
        return None
    for task_id, customer_id in (
        Task.objects.filter(thread_id=thread_id, status=Task.Status.QUEUED, waits_for_thread=True)
        .order_by("created_at", "pk").values_list("pk", "customer_id")
    ):
        if not Task.objects.filter(pk=task_id, status=Task.Status.QUEUED, waits_for_thread=True).update(
                waits_for_thread=False, requeues=F("requeues") + 1):
            continue

        limit = Customer.objects.filter(pk=customer_id).values_list("max_concurrent_tasks", flat=True).first() or 0
        if _starting(customer_id).exclude(pk=task_id).count() >= limit:
            _wait_for_slot(task_id, customer_id)
        else:
            transaction.on_commit(lambda: task_enqueue(task_id), robust=True)
        return task_id
    return None


def _announce_status(customer_id: int, task_id: int, status: str) -> None:
    _announce_statuses([(customer_id, task_id, status)])


def _announce_with_changes(changes: list[tuple[int, int, str]], *, frames: list[tuple[str, dict]] = (),
                           task_frames: bool = True) -> None:
    """Inside the transaction of the status changes: their notices are stored with them (one write transaction,
    not a second one after the commit, which a process dying in between also lost), and the frames go out
    once it commits, with `frames` (the same change's other live frames): one delivery for all of them.
    Called last in the transaction: the customers' stream rows stay locked until the commit."""
    if not changes:
        return
    if task_frames:
        frames = [*frames, *(realtime.task_status_frame(task_id, status) for _, task_id, status in changes)]
    batch = _announcing.get()
    if batch is not None:  # inside announcements_together(): published once, at its end
        batch[0].extend(changes)
        batch[1].extend(frames)
        return
    customer_notices_publish(notices=[(customer_id, {"type": "task_status", "task": task_id, "status": status})
                                      for customer_id, task_id, status in changes], also_send=frames)


_announcing: contextvars.ContextVar = contextvars.ContextVar("announcing", default=None)


@contextmanager
def announcements_together():
    """Inside one transaction: the status notices of the changes made within are stored in one write and their
    frames go out in one delivery once it commits (a worker's batch of starts), not one of each per task."""
    if _announcing.get() is not None:
        yield _announcing.get()
        return
    changes, frames = [], []
    token = _announcing.set((changes, frames))
    try:
        yield changes, frames  # a caller that rolls a change back to its savepoint drops what it added
    finally:
        _announcing.reset(token)
    # only when the block ended without an error: one escaping it rolls the transaction back (and may have left
    # it unusable), with every change these notices would announce
    customer_notices_publish(notices=[(customer_id, {"type": "task_status", "task": task_id, "status": status})
                                      for customer_id, task_id, status in changes], also_send=frames)


def _announce_statuses(changes: list[tuple[int, int, str]]) -> None:
    """After the changes committed: status frames on the tasks' sockets, sent together, and a notice each on
    the customers' streams, stored together (one transaction) and then sent live."""
    realtime.send_many([realtime.task_status_frame(task_id, status) for _, task_id, status in changes])
    notices = [(customer_id, {"type": "task_status", "task": task_id, "status": status})
               for customer_id, task_id, status in changes]
    try:
        customer_notices_publish(notices=notices)
    except DatabaseError:  # the tasks' changes are committed; only their notices are lost
        logger.warning("%d task status notice(s) not stored", len(notices), exc_info=True)


def _update_each(rows: list, fields: list[str]) -> None:
    """UPDATE these fields of each row (model instances of one model: tasks, threads), with one prepared
    statement run for all of them.

    Written by hand because QuerySet.bulk_update builds one CASE WHEN per field and row (about 2 ms a
    row in Python: 0.4 s for the 200 ends of a killswitch), and an update() per row builds its query each
    time; executemany sends the same statement with each row's values, the values prepared by the fields
    themselves (JSON, dates) for this backend.
    """
    if not rows:
        return
    meta = type(rows[0])._meta
    connection = connections[type(rows[0]).objects.db]
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(meta.db_table), ", ".join(f"{quote(c.column)} = %s" for c in columns), quote(meta.pk.column)
    )
    params = [
        [c.get_db_prep_save(getattr(row, c.attname), connection) for c in columns] + [row.pk] for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def task_events_append(*, task_id: int, events: list[dict]) -> list[dict]:
    """Append events with the next seqs (no gaps: the task row is locked while they are handed out)."""
    return task_events_append_many(batches={task_id: events}, announce=True).get(task_id, [])


def task_events_append_many(*, batches: dict[int, list[dict]], announce: bool,
                            pids: dict[int, int | None] | None = None,
                            tokens: dict[int, int] | None = None) -> dict[int, list[dict]]:
    """Append several tasks' events in one transaction, each task's in order with contiguous seqs.

    The task rows are locked in id order (two writers never deadlock). announce: also send them live
    once committed (the runtime sends them itself from its event loop). pids: sandboxes started since the
    worker's last write (task id -> pid); tokens: running tasks' tokens so far, changed since the worker's last
    write (task id -> tokens); both recorded in the same transaction. Returns the stored events by task.
    """
    batches = {task_id: events for task_id, events in batches.items() if events}
    if not batches:
        if pids or tokens:
            with transaction.atomic():
                _record_pids(pids)
                _record_tokens(tokens)
        return {}
    created: dict[int, list[dict]] = {}
    with transaction.atomic(savepoint=False):  # nested, it needs no savepoint: nothing catches its errors
        # every row this writes is locked first, in id order (the pids' and tokens' too): no two writers deadlock
        last = dict(
            Task.objects.select_for_update().filter(pk__in={*batches, *(pids or {}), *(tokens or {})}).order_by("pk")
            .values_list("pk", "last_seq")
        )
        _record_pids(pids)
        _record_tokens(tokens)
        rows, bumped = [], []
        for task_id, events in batches.items():
            if task_id not in last:
                continue
            start = last[task_id]
            task_rows = [
                TaskEvent(
                    task_id=task_id,
                    seq=start + i + 1,
                    type=e["type"],
                    source=(e.get("source") or "")[:200],
                    content=e.get("content"),
                )
                for i, e in enumerate(events)
            ]
            rows += task_rows
            bumped.append(Task(pk=task_id, last_seq=start + len(task_rows)))
        TaskEvent.objects.bulk_create(rows)
        _update_each(bumped, ["last_seq"])
        transaction.on_commit(lambda: metrics.events_written(len(rows)))
        for row in rows:
            created.setdefault(row.task_id, []).append(row.as_dict())
        if announce:
            transaction.on_commit(
                lambda: realtime.send_many([realtime.task_event_frame(t, e) for t, events in created.items() for e in events])
            )
    return created


def task_event_append(*, task_id: int, type: str, source: str = "", content=None) -> dict | None:
    created = task_events_append(task_id=task_id, events=[{"type": type, "source": source, "content": content}])
    return created[0] if created else None


def task_mark_running(*, task_id: int, worker: str, pid: int | None = None, task: Task | None = None) -> bool:
    """queued -> running; False when the task is no longer queued (cancelled meanwhile, or taken).

    No quota check: workers go through task_start, which claims one of the customer's slots first.
    The `running` event and notice are written in the same transaction (which a caller's may hold).
    task: the queued row as read in that transaction, if the caller has it (its customer, creation time and
    last seq: a queued task's events only change with its status, which the UPDATE below checks; the
    (task, seq) unique constraint stands behind that).
    """
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        # last_seq + 1 in the same UPDATE: the row is ours until the commit, so that seq is the event's
        changed = _queued_to_running(task_id, worker=worker[:200], pid=pid, now=now)
        if changed:
            if task is not None:
                customer_id, created_at, seq = task.customer_id, task.created_at, task.last_seq + 1
            else:
                customer_id, created_at, seq = (
                    Task.objects.filter(pk=task_id).values_list("customer_id", "created_at", "last_seq").first())
            event = TaskEvent.objects.create(task_id=task_id, seq=seq, type=TaskEvent.Type.STATUS,
                                             content={"status": Task.Status.RUNNING})
            transaction.on_commit(lambda: metrics.events_written(1))
            transaction.on_commit(lambda: metrics.task_started((now - created_at).total_seconds(), customer_id))
            _announce_with_changes([(customer_id, task_id, Task.Status.RUNNING)],
                                   frames=[realtime.task_event_frame(task_id, event.as_dict())])
    return bool(changed)


def _queued_to_running(task_id: int, *, worker: str, pid: int | None, now) -> bool:
    """The UPDATE of task_mark_running, written out: it runs at every task's start, and the ORM spent longer
    building it (three expressions) than the database took to run it. A task resumed after input keeps its
    start; the `running` event's seq is handed out in the same statement."""
    connection = connections[Task.objects.db]
    n = Names(connection)

    def col(name):
        return n.col(Task, name)

    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {n.table(Task)} SET {col('status')} = %s, "
            f"{col('started_at')} = COALESCE({col('started_at')}, %s), {col('heartbeat_at')} = %s, "
            f"{col('waiting_since')} = NULL, {col('worker')} = %s, {col('pid')} = %s, "
            f"{col('attempts')} = {col('attempts')} + 1, {col('last_seq')} = {col('last_seq')} + 1 "
            f"WHERE {col('id')} = %s AND {col('status')} = %s",
            [Task.Status.RUNNING.value, stamp, stamp, worker, pid, task_id, Task.Status.QUEUED.value],
        )
        return cursor.rowcount > 0


_UNREAD = object()  # task_start's task when the caller did not read the row


def task_start(*, task_id: int, worker: str, task=_UNREAD, engaged_scopes: set[str] | None = None) -> bool:
    """The worker picked the task up: queued -> running, unless it must not start (yet).

    A task whose customer is under the killswitch, or whose agent (or a team member) was
    stopped while it waited, ends cancelled instead. A task whose customer has no free
    max_concurrent_tasks slot stays queued, waiting (task_claim_slot). False when there is
    nothing to run now. One write transaction, whichever way it goes.
    task, engaged_scopes: the row (with its agent and team; None: it is gone) and the engaged killswitch
    scopes, as a caller's transaction read them for a batch of starts (DjangoTaskStore.start_many).
    """
    with transaction.atomic():
        if task is _UNREAD:
            # what the checks below read (not the spec and the other JSON columns: load() reads those once
            # running) (by primary key: [:1] with no ORDER BY, which first() would compile for nothing)
            task = next(iter(Task.objects.select_related("agent", "team").filter(pk=task_id).order_by()
                             .only("status", "customer", "created_at", "thread", "last_seq", "agent__status",
                                   "agent__name", "team")[:1]), None)
        if task is None or task.status != Task.Status.QUEUED:
            return False
        engaged = (killswitch_scope_engaged(task.customer_id) if engaged_scopes is None
                   else bool(engaged_scopes & {GLOBAL_SCOPE, killswitch_scope(task.customer_id)}))
        if engaged:
            task_finish(
                task_id=task_id,
                status=Task.Status.CANCELLED,
                error={"code": ErrorCode.KILLSWITCH, "message": "The killswitch is engaged: the task did not start"},
            )
            return False
        stopped = _stopped_agents(agent=task.agent, team=task.team)
        if stopped:
            task_finish(
                task_id=task_id,
                status=Task.Status.CANCELLED,
                error={"code": ErrorCode.CANCELLED, "message": f"Stopped before it started: {', '.join(stopped)}"},
            )
            return False
        return _claim_slot(task, worker)


def task_claim_slot(*, task_id: int, worker: str) -> bool:
    """queued -> running if the customer has a free max_concurrent_tasks slot; else the task waits."""
    with transaction.atomic():
        task = Task.objects.filter(pk=task_id).first()
        if task is None or task.status != Task.Status.QUEUED:
            return False
        return _claim_slot(task, worker)


def _claim_slot(task: Task, worker: str) -> bool:
    """In the caller's transaction, under the customer's row lock, so that two workers never both take the last
    slot. A task also waits while an older task of its customer waits (first in, first out).
    A waiting task has no job any more: task_wake_waiting enqueues it again when a slot frees."""
    task_id, customer_id = task.pk, task.customer_id
    seen = _slot_view(task)
    if seen is None:
        return False
    limit, running, thread_running, ahead = seen
    if thread_running:
        # a thread's tasks never run at the same time: it waits for the running one, which starts it
        Task.objects.filter(pk=task_id, status=Task.Status.QUEUED).update(waits_for_thread=True, waiting_since=None)
        logger.info("task %s waits for its thread's running task", task_id)
        return False
    if running < limit and not ahead:
        return task_mark_running(task_id=task_id, worker=worker, task=task)
    _wait_for_slot(task_id, customer_id)
    logger.info("task %s waits for a slot (customer %s: %s running, limit %s)", task_id, customer_id, running, limit)
    return False


def _slot_view(task: Task) -> tuple[int, int, int, int] | None:
    """(the customer's max_concurrent_tasks, its running tasks, those of the task's thread, its waiting tasks
    older than this one), the customer's row locked; None when the customer is gone.

    Hand-written, as the budget check is: the ORM spent several times longer building these two queries (a
    locked read and three filtered counts) than the database took to answer them, at every task's start.
    FOR NO KEY UPDATE (see quota_check_task_create) serializes the customer's slot and quota decisions without
    blocking the foreign-key checks of rows that name the customer (SQLite: its write lock does that)."""
    connection = connections[Task.objects.db]
    n = Names(connection)
    col = n.col
    lock = " FOR NO KEY UPDATE" if connection.features.has_select_for_no_key_update else ""
    status, waiting_since, created_at, pk = (f"t.{col(Task, f)}" for f in ("status", "waiting_since", "created_at", "id"))
    thread = f"t.{col(Task, 'thread')}"
    created = connection.ops.adapt_datetimefield_value(task.created_at)
    running, queued = Task.Status.RUNNING.value, Task.Status.QUEUED.value
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {col(Customer, 'max_concurrent_tasks')} FROM {n.table(Customer)} "
                       f"WHERE {col(Customer, 'id')} = %s{lock}", [task.customer_id])
        row = cursor.fetchone()
        if row is None:
            return None
        same_thread, thread_params = (f"{thread} = %s", [task.thread_id]) if task.thread_id is not None else (f"{thread} IS NULL", [])
        cursor.execute(
            f"SELECT COUNT(CASE WHEN {status} = %s THEN 1 END), "
            f"COUNT(CASE WHEN {status} = %s AND {same_thread} THEN 1 END), "
            f"COUNT(CASE WHEN {status} = %s AND {waiting_since} IS NOT NULL "
            f"AND ({created_at} < %s OR ({created_at} = %s AND {pk} < %s)) THEN 1 END) "
            f"FROM {n.table(Task)} t WHERE t.{col(Task, 'customer')} = %s "
            f"AND ({status} = %s OR ({status} = %s AND {waiting_since} IS NOT NULL))",
            [running, running, *thread_params, queued, created, created, task.pk, task.customer_id, running, queued],
        )
        counts = cursor.fetchone()
    return row[0], *counts


def _wait_for_slot(task_id: int, customer_id: int) -> None:
    """The task waits for one of its customer's slots, without a job. Once that commits, a slot that is free by
    then (a task that ended after this one counted, whose own look for waiting tasks came too early to see this
    one; or older waiting tasks whose wake-up was lost) is handed out: no wake-up is lost between the two."""
    Task.objects.filter(pk=task_id, status=Task.Status.QUEUED).update(waiting_since=timezone.now())
    transaction.on_commit(lambda: _wake_if_free(customer_id), robust=True)


def _wake_if_free(customer_id: int) -> None:
    limit = Customer.objects.filter(pk=customer_id).values_list("max_concurrent_tasks", flat=True).first()
    if limit is not None and _starting(customer_id).count() < limit:
        task_wake_waiting(customer_id=customer_id)


def _wake_if_waiting(customer_id: int) -> None:
    """A slot of the customer freed: wake its waiting tasks, if it has any. A read, not a locked transaction, when
    it has none (the common case); a task that starts waiting meanwhile looks for a free slot itself once its
    wait committed (_wait_for_slot)."""
    if Task.objects.filter(customer_id=customer_id, status=Task.Status.QUEUED, waiting_since__isnull=False).exists():
        task_wake_waiting(customer_id=customer_id)


def _locked_in_id_order(rows):
    """These task rows for an update(), locked in id order first (one statement: UPDATE ... WHERE id IN (SELECT
    ... ORDER BY id FOR UPDATE)), in the caller's transaction. Every writer of several task rows takes them in
    id order, as the finisher does: an UPDATE alone locks them in the order of its scan, and two writers could
    each hold a row the other waits for (docs/architecture.md, "Lock order"; tests/test_row_lock_order.py)."""
    return Task.objects.filter(pk__in=rows.order_by("pk").select_for_update().values("pk"))


def task_wake_waiting(*, customer_id: int) -> list[int]:
    """Enqueue again the customer's oldest waiting tasks, one per free max_concurrent_tasks slot."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update(no_key=True).filter(pk=customer_id).first()
        if customer is None:
            return []
        # Every task with a job on its way counts, woken or never made to wait: counting only the woken ones
        # let the reaper's periodic wake-up give a waiting task the slot of an older task whose first job was
        # still in the queue (two jobs for one slot, and the younger one could start first).
        free = customer.max_concurrent_tasks - _starting(customer_id).count()
        if free <= 0:
            return []
        woken = list(
            Task.objects.filter(customer_id=customer_id, status=Task.Status.QUEUED, waiting_since__isnull=False)
            .order_by("created_at", "pk")
            .values_list("pk", flat=True)[:free]
        )
        if woken:
            _locked_in_id_order(Task.objects.filter(pk__in=woken)).update(waiting_since=None,
                                                                          requeues=F("requeues") + 1)
            counters = Task.objects.filter(pk__in=woken).values_list("pk", "attempts", "requeues")
            jobs = [(pk, task_job_id(pk, attempts, requeues)) for pk, attempts, requeues in counters]
            transaction.on_commit(lambda: [task_enqueue(pk, job_id) for pk, job_id in jobs])
    return woken


def task_requeue(*, task_id: int) -> bool:
    """A restart: the task goes back to queued, its spec rebuilt on the agent's (or team's) current version.

    A running task is enqueued again (after its worker killed the old sandbox); a queued one only
    gets the new spec, since its job is still in the queue. False when the task finished meanwhile.
    """
    with transaction.atomic():
        task = Task.objects.select_for_update(of=("self",)).select_related("agent", "team").filter(pk=task_id).first()
        if task is None or task.is_finished:
            return False
        if task.agent is None and task.team is None:
            task_finish(
                task_id=task_id,
                status=Task.Status.FAILED,
                error={"code": ErrorCode.AGENT_ERROR, "message": "The agent or team was deleted before the task could restart"},
            )
            return False
        was_running = task.status == Task.Status.RUNNING
        task.spec = build_task_spec(agent=task.agent, team=task.team)
        task.agent_version = task.agent.version if task.agent is not None else None
        task.team_version = task.team.version if task.team is not None else None
        task.status = Task.Status.QUEUED
        task.stop_requested = ""
        task.suspension = None  # a restart runs the conversation again from its start
        task.started_at = None
        task.heartbeat_at = None
        task.worker = ""
        task.pid = None
        task.save(
            update_fields=[
                "spec", "agent_version", "team_version", "status", "stop_requested", "started_at", "heartbeat_at", "worker", "pid",
                "suspension",
            ]
        )
        if was_running:
            task_event_append(task_id=task_id, type=TaskEvent.Type.STATUS, content={"status": Task.Status.QUEUED, "reason": StopReason.RESTART})
            transaction.on_commit(lambda: task_enqueue(task_id))
            transaction.on_commit(lambda: _announce_status(task.customer_id, task_id, Task.Status.QUEUED))
    return True


def task_record_tokens(*, task_id: int, tokens: int) -> None:
    """The running task's tokens so far, so that the customer's monthly budget counts them while it runs."""
    with transaction.atomic():
        _record_tokens({task_id: tokens})


def _record_tokens(tokens: dict[int, int] | None) -> None:
    """Running tasks' tokens so far (task id -> tokens) on their rows and their customers' usage counters, in
    the caller's transaction. A task that ended meanwhile is left alone: its end recorded its usage."""
    if not tokens:
        return
    rows = (Task.objects.select_for_update().filter(pk__in=tokens, status=Task.Status.RUNNING).order_by("pk")
            .only("pk", "customer_id", "created_at", "tokens_used"))
    changed, usage = [], {}
    for task in rows:
        if tokens[task.pk] != task.tokens_used:
            task_usage_change(usage, task, tokens=tokens[task.pk] - task.tokens_used)
            task.tokens_used = tokens[task.pk]
            changed.append(task)
    _update_each(changed, ["tokens_used"])
    customer_usage_add(usage)


def task_usage_change(changes: dict, task: Task, **deltas: int) -> dict:
    """Add a task's change to (customer, day of its creation) -> the deltas of CustomerUsage.COUNTERS, for
    customer_usage_add; deltas by name: tasks=1, tokens=-20, succeeded=1 (a final status counts its ends)."""
    key = (task.customer_id, task.created_at.date())
    before = changes.get(key, (0,) * len(CustomerUsage.COUNTERS))
    changes[key] = tuple(b + deltas.pop(name, 0) for b, name in zip(before, CustomerUsage.COUNTERS))
    assert not deltas, f"not a usage counter: {deltas}"
    return changes


def task_heartbeat(*, task_id: int) -> None:
    task_heartbeat_many(task_ids=[task_id])


def task_heartbeat_many(*, task_ids: list[int], pids: dict[int, int | None] | None = None,
                        tokens: dict[int, int] | None = None) -> None:
    """One write for every running task of a worker; pids: sandboxes started since the last write
    (task id -> pid), tokens: tasks' tokens so far not recorded yet (task id -> tokens), recorded with it."""
    with transaction.atomic():
        if task_ids:
            _locked_in_id_order(Task.objects.filter(pk__in=task_ids, status=Task.Status.RUNNING)).update(
                heartbeat_at=timezone.now())
        _record_pids(pids)
        _record_tokens(tokens)


def _record_pids(pids: dict[int, int | None] | None) -> None:
    """The pids of the tasks' sandboxes (shown to operators; the reaper does not rely on them)."""
    if pids:
        connection = connections[Task.objects.db]
        n = Names(connection)
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {n.table(Task)} SET {n.col(Task, 'pid')} = %s WHERE {n.col(Task, 'id')} = %s "
                f"AND {n.col(Task, 'status')} = %s",
                [(pid, task_id, Task.Status.RUNNING.value) for task_id, pid in sorted(pids.items())])


def task_finish(*, task_id: int, status: str, result=None, error=None, usage=None, thread_state=None,
                events=None) -> bool:
    """Move a queued or running task to a final status, once. A finished task never changes again.
    events: its last events ({type, source, content}), stored before the closing ones."""
    return task_finish_many([(task_id, {"status": status, "result": result, "error": error, "usage": usage,
                                        "thread_state": thread_state, "events": events})])[0]


# suspension, input_deadline: a state saved while waiting for input is not kept once the task ended
FINISH_FIELDS = ["status", "result", "error", "usage", "tokens_used", "finished_at", "pid", "suspension", "input_deadline"]


def task_finish_many(ends: list[tuple[int, dict]]) -> list[bool]:
    """End several tasks in one transaction, each once (True where this call ended it).

    Each end is the keyword arguments of task_finish. The rows are locked in id order, written with one
    UPDATE, their last and closing events appended together, their status notices stored in the same
    transaction; once committed, the customers whose slot freed get one wake-up each (if they have waiting
    tasks) and the status frames go out together. A killswitch or a burst of ends costs a few
    queries, not six per task (measured: 200 ends one by one held a killswitch for 0.9 s).
    """
    for _, end in ends:
        assert end["status"] in Task.FINISHED, end["status"]
    with transaction.atomic():
        rows = {
            t.pk: t
            for t in Task.objects.select_for_update()
            .filter(pk__in=[task_id for task_id, _ in ends])
            .order_by("pk")
            .only("pk", "status", "customer_id", "thread_id", "started_at", "stop_requested", "webhook_id",
                  "tokens_used", "created_at")
        }
        # stamped once the rows are ours (the write lock waited for, on SQLite), not before: finished_at is then
        # this transaction's own few milliseconds before the commit that makes the end visible
        now = timezone.now()
        results, changed, kept, events, freed, finished, forgotten = [], [], [], {}, set(), [], []
        usage_changes: dict = {}  # (customer, day) -> (tasks, tokens): the customers' usage counters follow
        threads_saved: list[Thread] = []  # the state each succeeded task leaves on its thread
        for task_id, end in ends:
            task = rows.get(task_id)
            if task is None or task.is_finished:
                results.append(False)  # gone, or ended already (by an earlier end of this same batch too)
                continue
            if task.status == Task.Status.RUNNING:
                freed.add(task.customer_id)  # its slot is free: the customer's next waiting task may start
            status, error, usage = end["status"], end.get("error"), end.get("usage")
            task.status, task.result, task.error, task.finished_at, task.pid = status, end.get("result"), error, now, None
            task.suspension, task.input_deadline = None, None
            tokens_before = task.tokens_used
            if usage is not None:
                task.usage = usage
                task.tokens_used = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
                changed.append(task)
            else:  # what it used so far stays
                kept.append(task)
            if task.stop_requested == StopReason.ROLLBACK:
                forgotten.append(task_id)  # multitask_strategy rollback: deleted below, its state not kept
                task_usage_change(usage_changes, task, tasks=-1, tokens=-tokens_before)  # it counts no more
            else:
                task_usage_change(usage_changes, task, tokens=task.tokens_used - tokens_before, **{status: 1})
                if end.get("thread_state") is not None:
                    threads_saved.append(Thread(pk=task.thread_id, state=end["thread_state"], updated_at=now))
            closing = [e for e in end.get("events") or [] if task.stop_requested != StopReason.ROLLBACK]
            if usage:
                closing.append({"type": TaskEvent.Type.USAGE, "content": usage})
            if error:
                closing.append({"type": TaskEvent.Type.ERROR, "content": error})
            closing.append({"type": TaskEvent.Type.STATUS, "content": {"status": status}})
            events[task_id] = closing
            duration = (now - task.started_at).total_seconds() if task.started_at else None
            finished.append((task.customer_id, task_id, status, (error or {}).get("code"), duration))
            results.append(True)
        _update_each(changed, FINISH_FIELDS)
        _update_each(kept, [f for f in FINISH_FIELDS if f not in ("usage", "tokens_used")])
        _update_each(threads_saved, ["state", "updated_at"])  # in end order: a thread's last end wins
        customer_usage_add(usage_changes)
        if events:
            stored = task_events_append_many(batches=events, announce=False)  # their frames go with the statuses
            if forgotten:
                Task.objects.filter(pk__in=forgotten).delete()  # with its events
            # Every way a task ends comes through here: the webhook deliveries of these ends are written in
            # this transaction (integrations' receiver) and sent by the delivery workers once it commits.
            signals.tasks_ended.send(sender=Task, ends=[(t, c, f"task.{s}") for c, t, s, _, _ in finished if t not in forgotten],
                                     customers={c for c, *_ in finished}, task_webhooks={t: r.webhook_id for t, r in rows.items()})
            # the next task waiting for each of these threads may start now
            threads = {rows[t].thread_id for _, t, *_ in finished}
            for thread_id in (Task.objects.filter(thread_id__in=threads, status=Task.Status.QUEUED, waits_for_thread=True)
                              .values_list("thread_id", flat=True).distinct().order_by()):
                _thread_start_next(thread_id)
            for customer_id in freed:  # the reaper retries a lost wake-up
                transaction.on_commit(lambda c=customer_id: _wake_if_waiting(c), robust=True)
            transaction.on_commit(lambda: [metrics.task_finished(s, code, d, c) for c, _, s, code, d in finished])
            # last: it locks the streams
            _announce_with_changes([(c, t, s) for c, t, s, _, _ in finished],
                                   frames=[realtime.task_event_frame(t, e) for t, es in stored.items() for e in es])
    return results


# Unstarted tasks ended in one transaction at most by tasks_stop.
CANCEL_QUEUED_BATCH = 200


def _stop_scope(*, agent, customer_id: int | None, everyone: bool):
    assert (agent is not None) + (customer_id is not None) + everyone == 1, "give exactly one scope"
    if agent is not None:
        return Task.objects.filter(pk__in=agent_tasks_in_flight(agent).order_by().values("pk"))
    if customer_id is not None:
        return Task.objects.filter(customer_id=customer_id)
    return Task.objects.all()


def tasks_stop_running(*, reason: str, agent=None, customer_id: int | None = None, everyone: bool = False,
                       announce_none: bool = True) -> list[int]:
    """The running part of tasks_stop: ask the scope's running tasks to stop for `reason` (one UPDATE) and send
    their workers the kill order when it commits. Returns their ids. Inside a caller's transaction (the
    killswitch's), the stop requests commit with the caller's write: a worker that sees the one sees the other.
    `announce_none=False` sends no kill order when no task is running."""
    scope = _stop_scope(agent=agent, customer_id=customer_id, everyone=everyone)
    with transaction.atomic():
        # locked in id order, as the finisher locks the rows it ends: an UPDATE alone locks them in the order of
        # its scan, and a killswitch over tasks that are ending meanwhile could deadlock with the finisher
        # (not those asked already for this reason: their kill order went out, the poll stands behind it)
        stopping = list(scope.filter(status=Task.Status.RUNNING).exclude(stop_requested=reason)
                        .select_for_update(of=("self",)).order_by("pk").values_list("pk", flat=True))
        Task.objects.filter(pk__in=stopping, status=Task.Status.RUNNING).update(stop_requested=reason)
        # robust: the workers' database poll (Task.stop_requested) is the backstop of a lost kill order
        if agent is not None:
            transaction.on_commit(lambda: [sandbox_kill(task_id, reason) for task_id in stopping], robust=True)
        elif stopping or announce_none:
            transaction.on_commit(lambda: sandbox_kill_scope(customer_id, reason), robust=True)
    return stopping


def tasks_stop(*, reason: str, message: str, agent=None, customer_id: int | None = None, everyone: bool = False,
               announce_none: bool = True) -> dict:
    """Stop the unfinished tasks of one scope: an agent's (its own and its teams'), a customer's, or everyone's.

    The one rule behind agent stop and restart, the killswitch and customer deletion. Running tasks are asked to
    stop for `reason` (a runtime.outcomes.StopReason): one UPDATE, and the kill order goes to their workers when
    it commits (one per task for an agent, one for the whole scope otherwise); the workers end them as
    runtime.outcomes.stop_outcome says. Queued tasks end now, cancelled with `message`, in batches of one
    transaction each (a large backlog never delays the kill), their jobs leaving the queue; on a restart they
    move to the current version instead. Tasks waiting for input end too, except on a restart (answered, they
    run the version they started on) and under the killswitch (an answer is refused while it is engaged).
    `announce_none=False`: no kill order when no task is running (the killswitch sent its own already).
    Returns the task ids: {"stopping": [...], "cancelled": [...], "requeued": [...]}."""
    scope = _stop_scope(agent=agent, customer_id=customer_id, everyone=everyone)
    stopping = tasks_stop_running(reason=reason, agent=agent, customer_id=customer_id, everyone=everyone,
                                  announce_none=announce_none)
    requeued, cancelled = [], []
    if reason == StopReason.RESTART:
        for task_id in scope.filter(status=Task.Status.QUEUED).order_by("created_at", "pk").values_list("pk", flat=True):
            if task_requeue(task_id=task_id):  # still queued, now with the current version's spec
                requeued.append(task_id)
        return {"stopping": stopping, "cancelled": cancelled, "requeued": requeued}
    unstarted = [Task.Status.QUEUED] + ([] if reason == StopReason.KILLSWITCH else [Task.Status.INPUT_REQUIRED])
    error = {"code": stop_outcome(reason).error["code"], "message": message}
    while True:
        with transaction.atomic():
            head = list(scope.filter(status__in=unstarted).order_by("pk")
                        .values_list("pk", "customer_id")[:CANCEL_QUEUED_BATCH])
            # Locked, so that no worker takes one of them between this look and the write: their customers' rows
            # first (in id order), then theirs (in id order). A worker's batch of starts holds each customer's
            # row before its task's (DjangoTaskStore.start_many); taking a task first could deadlock with it.
            list(Customer.objects.filter(pk__in={c for _, c in head}).order_by("pk").select_for_update(no_key=True)
                 .values_list("pk", flat=True))
            batch = list(Task.objects.filter(pk__in=[pk for pk, _ in head], status__in=unstarted)
                         .select_for_update().order_by("pk").values_list("pk", "attempts", "requeues"))
            ended = task_finish_many([(pk, {"status": Task.Status.CANCELLED, "error": error}) for pk, _, _ in batch])
            done = [row for row, ok in zip(batch, ended) if ok]
            cancelled += [pk for pk, _, _ in done]
            transaction.on_commit(lambda jobs=[task_job_id(*d) for d in done]: _drop_jobs(jobs), robust=True)
        if len(head) < CANCEL_QUEUED_BATCH:
            return {"stopping": stopping, "cancelled": cancelled, "requeued": requeued}


def _drop_jobs(job_ids: list[str]) -> None:
    """Take the jobs of tasks that ended before they ran out of the queue: no worker spends a slot on them."""
    import django_rq

    if not job_ids:
        return
    queue = django_rq.get_queue("default")
    with queue.connection.pipeline() as pipe:
        for job_id in job_ids:
            pipe.lrem(queue.key, 1, job_id)
            pipe.delete(queue.job_class.key_for(job_id))
        pipe.execute()


def task_request_stop(*, task: Task, reason: str) -> None:
    """Ask the worker running the task to kill its sandbox; `reason` (a StopReason) says how it ends (stop_outcome)."""
    Task.objects.filter(pk=task.pk, status=Task.Status.RUNNING).update(stop_requested=reason)
    transaction.on_commit(lambda: sandbox_kill(task.pk, reason))


@transaction.atomic
def task_cancel(*, actor, task: Task, request=None) -> Task:
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.is_finished:
        raise Conflict(f"Task already finished ({task.status})")
    audit_record(actor=actor, action="task.cancel", target=f"task:{task.pk}", customer=task.customer, request=request)
    if task.status == Task.Status.QUEUED:
        task_finish(
            task_id=task.pk,
            status=Task.Status.CANCELLED,
            error={"code": ErrorCode.CANCELLED, "message": "Cancelled before it started"},
        )
    elif task.status == Task.Status.INPUT_REQUIRED:
        task_finish(
            task_id=task.pk,
            status=Task.Status.CANCELLED,
            error={"code": ErrorCode.CANCELLED, "message": "Cancelled while it waited for input"},
        )
    else:
        task_request_stop(task=task, reason=StopReason.CANCELLED)
    task.refresh_from_db()
    return task


def task_reap_lost(*, lease_seconds: float) -> list[int]:
    """End running tasks whose worker stopped heart-beating: failed/worker_lost (cancelled if a stop was asked)."""
    cutoff = timezone.now() - timedelta(seconds=lease_seconds)
    lost = list(
        Task.objects.filter(status=Task.Status.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", "stop_requested")
    )
    ended = []
    for task_id, reason in lost:
        if reason:  # a stop was asked: it ends as that stop says (a restart goes back to the queue)
            outcome = stop_outcome(reason, "Stopped; its worker was lost before it could confirm")
        else:
            outcome = failed(ErrorCode.WORKER_LOST,
                             f"The worker running the task stopped responding for over {lease_seconds:g} s")
        if outcome.status == REQUEUE:
            done = task_requeue(task_id=task_id)
        else:
            done = task_finish(task_id=task_id, status=outcome.status, error=outcome.error)
        if done:
            logger.warning("reaped task %s (worker lost)", task_id)
            ended.append(task_id)
            _rq_job_lost(task_id)
    return ended


def _rq_job_lost(task_id: int) -> None:
    """The job of a reaped task leaves RQ's started registry at once, failed: the dashboard never shows
    a finished task running (RQ alone would notice only when the job's heartbeat expires)."""
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.job_lifecycle import record_job_failure
    from rq.registry import StartedJobRegistry

    attempts, requeues = Task.objects.filter(pk=task_id).values_list("attempts", "requeues").first() or (0, 0)
    connection = django_rq.get_connection("default")
    try:
        job = Job.fetch(task_job_id(task_id, max(0, attempts - 1), requeues), connection=connection)
        if job.get_status() != JobStatus.STARTED:
            return
        with connection.pipeline() as pipe:
            StartedJobRegistry(job.origin, connection=connection).remove_executions(job, pipeline=pipe)
            record_job_failure(job, "The worker running the task was lost (task ended worker_lost)", pipe)
            pipe.execute()
    except NoSuchJobError:
        pass
    except Exception:  # noqa: BLE001 - RQ's own cleanup catches up when its heartbeat expires
        logger.warning("could not fail the RQ job of reaped task %s", task_id, exc_info=True)


def task_requeue_orphans(*, older_than_seconds: float, stale_start_seconds: float | None = None) -> list[int]:
    """Enqueue again queued tasks whose RQ job is gone (Redis lost it, or the enqueue never happened),
    created more than older_than_seconds ago. A job a worker took more than stale_start_seconds ago
    (default: older_than_seconds) while its task is still queued counts as gone: that worker died.

    Tasks waiting for a slot have no job by design: their customers get a task_wake_waiting
    instead, which starts them if a slot is free (a lost wake-up, or a raised quota).
    """
    import django_rq
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    for customer_id in (
        Task.objects.filter(status=Task.Status.QUEUED, waiting_since__isnull=False)
        .values_list("customer_id", flat=True).distinct().order_by()
    ):
        task_wake_waiting(customer_id=customer_id)
    # tasks waiting for their thread: start the next one of any thread where none runs (a lost hand-over)
    for thread_id in (
        Task.objects.filter(status=Task.Status.QUEUED, waits_for_thread=True)
        .values_list("thread_id", flat=True).distinct().order_by()
    ):
        with transaction.atomic():
            _thread_start_next(thread_id)
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stale_cutoff = timezone.now() - timedelta(
        seconds=older_than_seconds if stale_start_seconds is None else stale_start_seconds
    )
    queued = Task.objects.filter(
        status=Task.Status.QUEUED, waiting_since__isnull=True, waits_for_thread=False, created_at__lt=cutoff
    ).values_list("pk", "attempts", "requeues")
    connection = django_rq.get_connection("default")
    live = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}
    requeued = []
    for task_id, attempts, requeues in queued:
        try:
            job = Job.fetch(task_job_id(task_id, attempts, requeues), connection=connection)
            status = job.get_status(refresh=False)
            # A job a worker took long ago, yet the task never started: that worker died.
            stale_start = status == JobStatus.STARTED and job.started_at and job.started_at < stale_cutoff
            if status in live and not stale_start:
                continue
            job.delete()
        except NoSuchJobError:
            pass
        # a new job id, and only if nothing took or woke the task meanwhile
        if not Task.objects.filter(pk=task_id, status=Task.Status.QUEUED, waiting_since__isnull=True,
                                   waits_for_thread=False, attempts=attempts,
                                   requeues=requeues).update(requeues=F("requeues") + 1):
            continue
        task_enqueue(task_id, task_job_id(task_id, attempts, requeues + 1))
        logger.warning("re-enqueued orphaned task %s", task_id)
        requeued.append(task_id)
    return requeued


# -- human input ------------------------------------------------------------------------------------


def task_input_request(task: Task) -> dict | None:
    """What the task asks a person while it waits in input_required ({prompt, kind, ...}), else None."""
    if task.status != Task.Status.INPUT_REQUIRED or not task.suspension:
        return None
    return task.suspension.get("request")


def task_suspend(*, task_id: int, request: dict, suspension: dict, usage: dict) -> bool:
    """running -> input_required: the run stopped to ask a person (its worker already let the sandbox
    and the slot go). The question becomes an `input_request` event; nobody answering within
    TASK_INPUT_TIMEOUT_SECONDS ends the task timed_out (input_timeout, task_expire_input).
    A stop asked meanwhile wins: the task ends (or restarts) as that stop says."""
    now = timezone.now()
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None or task.status != Task.Status.RUNNING:
            return False
        if task.stop_requested:
            outcome = stop_outcome(task.stop_requested)
            if outcome.status == REQUEUE:
                return task_requeue(task_id=task_id)
            return task_finish(task_id=task_id, status=outcome.status, error=outcome.error, usage=usage)
        deadline = now + timedelta(seconds=settings.TASK_INPUT_TIMEOUT_SECONDS)
        shown = {**request, "expires_at": deadline.isoformat().replace("+00:00", "Z")}
        task.status = Task.Status.INPUT_REQUIRED
        task.suspension = {**suspension, "request": shown, "answer": None}
        task.input_deadline = deadline
        task.usage = usage
        tokens_before = task.tokens_used
        task.tokens_used = int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        customer_usage_add(task_usage_change({}, task, tokens=task.tokens_used - tokens_before))
        task.pid = None
        task.heartbeat_at = None
        task.worker = ""
        task.save(update_fields=["status", "suspension", "input_deadline", "usage", "tokens_used", "pid",
                                 "heartbeat_at", "worker"])
        task_events_append(task_id=task_id, events=[
            {"type": TaskEvent.Type.INPUT_REQUEST, "source": shown.get("agent") or "", "content": shown},
            {"type": TaskEvent.Type.STATUS, "content": {"status": Task.Status.INPUT_REQUIRED}},
        ])
        # it holds no slot while it waits: the customer's next waiting task may start
        transaction.on_commit(lambda: task_wake_waiting(customer_id=task.customer_id), robust=True)
        transaction.on_commit(lambda: _announce_status(task.customer_id, task_id, Task.Status.INPUT_REQUIRED))
        signals.task_event.send(sender=Task, task=task, event="task.input_required")  # webhooks: sent once this commits
    return True


@transaction.atomic
def task_answer(*, actor, task: Task, text=None, approve=None, request=None) -> Task:
    """A person's answer to a task waiting in input_required: `text` for an input request, `approve`
    (true/false) for an approval. The task goes back to the queue and a worker resumes it from the
    state it saved, in a new sandbox. 409 when it is not waiting."""
    task = Task.objects.select_for_update().select_related("customer").get(pk=task.pk)
    if task.status != Task.Status.INPUT_REQUIRED or not task.suspension:
        raise Conflict(f"The task is not waiting for input (status {task.status})")
    kind = (task.suspension.get("request") or {}).get("kind")
    if kind == "approval":
        if not isinstance(approve, bool):
            raise ValidationFailed(details={"approve": ["The task asks for an approval: send {\"approve\": true} or false"]})
        answer = {"kind": "approval", "approve": approve}
    else:
        if not isinstance(text, str) or len(text) > settings.MAX_TASK_INPUT_CHARS:
            raise ValidationFailed(details={"text": [
                f"The task asks for input: send {{\"text\": ...}}, at most {settings.MAX_TASK_INPUT_CHARS} characters"]})
        answer = {"kind": "input", "text": text}
    if killswitch_scope_engaged(task.customer_id):
        raise KillswitchEngaged()
    task.suspension = {**task.suspension, "answer": answer}
    task.status = Task.Status.QUEUED
    task.waiting_since = None
    task.input_deadline = None
    task.requeues += 1
    task.save(update_fields=["suspension", "status", "waiting_since", "input_deadline", "requeues"])
    by = getattr(actor, "username", "") or ""
    task_events_append(task_id=task.pk, events=[
        {"type": TaskEvent.Type.INPUT_RESPONSE, "source": by, "content": answer},
        {"type": TaskEvent.Type.STATUS, "content": {"status": Task.Status.QUEUED, "reason": "input"}},
    ])
    audit_record(actor=actor, action="task.input", target=f"task:{task.pk}", customer=task.customer, request=request,
                 details={"kind": answer["kind"], **({"approve": approve} if kind == "approval" else {})})
    job_id = task_job_id(task.pk, task.attempts, task.requeues)
    # announced before its job is enqueued (the customer's stream stores `queued` before a worker's `running`)
    transaction.on_commit(lambda: _announce_status(task.customer_id, task.pk, Task.Status.QUEUED), robust=True)
    transaction.on_commit(lambda: task_enqueue(task.pk, job_id), robust=True)
    return task


def task_expire_input(*, now=None) -> list[int]:
    """End the tasks nobody answered in time: timed_out with input_timeout (the reaper calls this)."""
    now = now or timezone.now()
    expired = list(
        Task.objects.filter(status=Task.Status.INPUT_REQUIRED, input_deadline__lt=now).values_list("pk", flat=True)[:500]
    )
    ended = []
    for task_id in expired:
        message = f"Nobody answered the task's request for input within {settings.TASK_INPUT_TIMEOUT_SECONDS:g} s"
        with transaction.atomic():
            # only if still waiting (an answer that came meanwhile wins)
            if not Task.objects.select_for_update().filter(pk=task_id, status=Task.Status.INPUT_REQUIRED,
                                                           input_deadline__lt=now).exists():
                continue
            if task_finish(task_id=task_id, status=Task.Status.TIMED_OUT,
                           error={"code": ErrorCode.INPUT_TIMEOUT, "message": message}):
                ended.append(task_id)
    return ended
