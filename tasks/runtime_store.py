"""The task app's side of the runtime's port (runtime.ports.TaskStore): every database read and write a
running task needs, batched across the tasks a worker holds where it can be."""
import logging

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.crypto import decrypt
from accounts.models import Customer, CustomerUsage
from agents.models import ModelConfig, Tool
from autogen_platform.sql import Names
from core.selectors import killswitch_engaged_scopes, killswitch_scopes_engaged
from runtime.outcomes import StopReason
from runtime.ports import TaskContext

from . import services
from .models import Task

logger = logging.getLogger(__name__)


class DjangoTaskStore:
    def start(self, task_id: int, worker: str) -> bool:
        return services.task_start(task_id=task_id, worker=worker)

    def start_many(self, task_ids: list[int], worker: str) -> list:
        return self._start_many(task_ids, worker)[0]

    def _start_many(self, task_ids: list[int], worker: str) -> tuple[list, dict[int, Task]]:
        """start_many, and the rows it read (the started ones: what load() reads, but their status)."""
        results: list = [None] * len(task_ids)
        # one write transaction (one SQLite lock take) for a burst of starts, their notices stored together;
        # the rows and the engaged killswitch scopes read once for the batch, not once per start
        with transaction.atomic(), services.announcements_together() as (changes, frames):
            rows = {task.pk: task for task in Task.objects.select_related("agent", "team", "thread")
                    .filter(pk__in=task_ids).order_by()}
            engaged = killswitch_engaged_scopes()
            # Each start locks its customer's row until this commits. Customers in id order, so that two
            # workers' batches never each hold a customer the other waits for (PostgreSQL then aborted one
            # of them, and a web request queued behind them: seen in a burst of two customers); within a
            # customer, in the order given (the jobs' order: first in, first out).
            customer = {t: row.customer_id for t, row in rows.items()}
            for i in sorted(range(len(task_ids)), key=lambda i: customer.get(task_ids[i], 0)):
                kept = len(changes), len(frames)
                try:  # each in its own savepoint
                    results[i] = services.task_start(task_id=task_ids[i], worker=worker, task=rows.get(task_ids[i]),
                                                     engaged_scopes=engaged)
                except Exception as exc:  # noqa: BLE001 - rolled back to its savepoint; the others go on
                    del changes[kept[0]:], frames[kept[1]:]
                    results[i] = exc
        return results, rows

    def start_and_load_many(self, task_ids: list[int], worker: str) -> list:
        results, rows = self._start_many(task_ids, worker)
        started = [rows[task_id] for task_id, result in zip(task_ids, results) if result is True]
        try:
            models = self._models(started)
        except Exception as exc:  # noqa: BLE001 - every started run reports it and ends its task
            models = exc
        out = []
        for task_id, result in zip(task_ids, results):
            if result is not True:
                out.append(result or None)
                continue
            try:
                if isinstance(models, Exception):
                    raise models
                out.append((self._context(rows[task_id], models), None))
            except Exception as exc:  # noqa: BLE001
                out.append((None, exc))
        return out

    def load(self, task_id: int) -> TaskContext | None:
        # [:1] without ORDER BY: first() would order by the model's ordering, which the ORM spent longer
        # compiling than the database took to answer, at every task's start
        task = next(iter(Task.objects.select_related("thread").filter(pk=task_id).order_by()[:1]), None)
        if task is None or task.status != Task.Status.RUNNING:
            return None
        return self._context(task, self._models([task]))

    @staticmethod
    def _model_ids(task: Task) -> set[int]:
        spec = task.spec or {}
        ids = {a["model"] for a in spec.get("agents") or []}
        if spec.get("kind") == "team":
            ids.update(spec["team"][f] for f in ("selector_model", "orchestrator_model") if spec["team"].get(f))
        return ids

    def _models(self, tasks: list[Task]) -> dict[tuple[int, int], dict]:
        """The model configurations these tasks run, read together: (customer id, config id) -> what the
        child gets (a task sees only its own customer's configurations)."""
        wanted = {(task.customer_id, pk) for task in tasks for pk in self._model_ids(task)}
        if not wanted:
            return {}
        models = {}
        for config in ModelConfig.objects.filter(pk__in={pk for _, pk in wanted}):
            if (config.customer_id, config.pk) not in wanted:
                continue
            models[(config.customer_id, config.pk)] = {
                "id": config.pk,
                "name": config.name,
                "provider": config.provider,
                "model": config.model,
                "base_url": config.base_url,
                "api_key": _decrypt_or_none(config.api_key_encrypted),
                "model_info": dict(config.model_info or {}),
                "responses": list(config.responses or []),
            }
        return models

    def _context(self, task: Task, models: dict[tuple[int, int], dict]) -> TaskContext:
        spec = task.spec or {}
        agents = spec.get("agents") or []
        own = {pk: models[(task.customer_id, pk)] for pk in self._model_ids(task) if (task.customer_id, pk) in models}
        defaults = settings.DEFAULT_AGENT_LIMITS
        merged = [{**defaults, **(a.get("limits") or {})} for a in agents]
        limits = {key: max(int(m[key]) for m in merged) for key in defaults} if agents else dict(defaults)
        budgets = {a["id"]: int(m["max_tokens"]) for a, m in zip(agents, merged)}
        resume = _resume(task)
        return TaskContext(
            task_id=task.pk,
            customer_id=task.customer_id,
            agent_id=task.agent_id,
            input=task.input,
            spec=spec,
            thread_state=resume.pop("state") if resume else task.thread.state,
            models=own,
            budgets=budgets,
            limits=limits,
            traceparent=task.traceparent,
            created_at=task.created_at.timestamp(),
            resume=resume,
        )

    def http_tool_access(self, customer_id: int, name: str) -> dict:
        hosts = Customer.objects.filter(pk=customer_id).values_list("http_tool_hosts", flat=True).first()
        stored = (Tool.objects.filter(customer_id=customer_id, name=name, kind=Tool.Kind.HTTP)
                  .values_list("secret_headers_encrypted", flat=True).first())
        secrets = None
        if stored is not None:  # a value that cannot be decrypted counts as missing: the call says so
            secrets = {h: v for h, v in ((h, _decrypt_or_none(t)) for h, t in (stored or {}).items()) if v is not None}
        return {"hosts": list(hosts or []), "secrets": secrets}

    def heartbeat(self, task_ids: list[int], pids: dict[int, int | None] | None = None,
                  tokens: dict[int, int] | None = None) -> None:
        services.task_heartbeat_many(task_ids=task_ids, pids=pids, tokens=tokens)

    def append_events(self, batches: dict[int, list[dict]], pids: dict[int, int | None] | None = None,
                      tokens: dict[int, int] | None = None) -> dict[int, list[dict]]:
        return services.task_events_append_many(batches=batches, announce=False, pids=pids, tokens=tokens)

    def stop_reasons(self, scope: dict[int, int]) -> dict[int, str]:
        if not scope:
            return {}
        reasons = dict(
            Task.objects.filter(pk__in=scope).filter(~Q(stop_requested="")).values_list("pk", "stop_requested")
        )
        engaged = killswitch_scopes_engaged(set(scope.values()))
        for task_id, customer_id in scope.items():
            if task_id not in reasons and customer_id in engaged:
                reasons[task_id] = StopReason.KILLSWITCH
        return reasons

    def tokens_left(self, task_id: int, customer_id: int, task_tokens: int) -> int:
        # One statement, written out: it runs before and after every model call, and the ORM spent more CPU
        # building its two subqueries than the database spent answering them.
        row = _tokens_row(customer_id, task_id)
        if row is None:
            return 0  # the customer is gone
        recorded, budget, used = row
        # a read only: the task's tokens not recorded yet count here, and the runtime records them with its
        # next write (events, heartbeat or end), not in a transaction of their own
        if recorded is None:  # the task is gone
            return int(budget) - int(used)
        return int(budget) - (int(used) + task_tokens - recorded)

    def finish(self, task_id: int, *, status: str, result=None, error=None, usage=None, thread_state=None) -> bool:
        return services.task_finish(
            task_id=task_id, status=status, result=result, error=error, usage=usage, thread_state=thread_state
        )

    def finish_many(self, ends: list[tuple[int, dict]]) -> list:
        try:
            return services.task_finish_many(ends)
        except Exception:  # noqa: BLE001 - one bad end must not hold the others: store them one by one
            logger.warning("storing %d task ends together failed; storing them one by one", len(ends), exc_info=True)
        results = []
        for task_id, end in ends:
            try:
                results.append(services.task_finish(task_id=task_id, **end))
            except Exception as exc:  # noqa: BLE001 - that one is retried by its run
                results.append(exc)
        return results

    def requeue(self, task_id: int) -> bool:
        return services.task_requeue(task_id=task_id)

    def suspend(self, task_id: int, *, request: dict, suspension: dict, usage: dict) -> bool:
        return services.task_suspend(task_id=task_id, request=request, suspension=suspension, usage=usage)


def _tokens_row(customer_id: int, task_id: int):
    """(the task's recorded tokens or None, the customer's monthly budget, its tokens this month) or None."""
    connection = connections[Task.objects.db]
    n = Names(connection)
    column, table = n.col, n.table
    month_start = timezone.now().date().replace(day=1)
    sql = (
        f"SELECT t.{column(Task, 'tokens_used')}, c.{column(Customer, 'monthly_token_budget')}, "
        f"(SELECT COALESCE(SUM(u.{column(CustomerUsage, 'tokens')}), 0) FROM {table(CustomerUsage)} u "
        f"WHERE u.{column(CustomerUsage, 'customer')} = c.{column(Customer, 'id')} "
        f"AND u.{column(CustomerUsage, 'day')} >= %s) "
        f"FROM {table(Customer)} c "
        f"LEFT JOIN {table(Task)} t ON t.{column(Task, 'id')} = %s "
        f"WHERE c.{column(Customer, 'id')} = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datefield_value(month_start), task_id, customer_id])
        return cursor.fetchone()


def _resume(task: Task) -> dict | None:
    """A task answered after it stopped to ask a person resumes from the state it saved then."""
    suspension = task.suspension or {}
    if not suspension.get("answer"):
        return None
    return {
        "state": suspension.get("state"),
        "pending": suspension.get("pending") or {},
        "answer": suspension["answer"],
        "broker": suspension.get("broker") or {},
        "workdir": suspension.get("workdir"),
        "usage": dict(task.usage or {}),
    }


def _decrypt_or_none(token: str):
    """None when the stored key cannot be decrypted (FIELD_ENCRYPTION_KEY changed): the task ends model_error."""
    try:
        return decrypt(token)
    except ValueError:
        return None
