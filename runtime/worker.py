"""The RQ worker that runs many tasks at once: RQ stays the queue, the Runtime runs the tasks.

RQ 3.0 has no worker that runs jobs concurrently (its async worker is an open pull request,
rq/rq#2445); a Worker subclass is its documented extension point. This one is RQ's SimpleWorker
(no work-horse fork) with three changes:

- it dequeues a job only when the Runtime has a free slot, so jobs it cannot start stay in the queue
  for other workers and hosts;
- a task job (tasks.jobs.run_task) is not performed in the loop: its task is handed to the Runtime
  and the loop dequeues the next one at once. RQ's bookkeeping (StartedJobRegistry, execution, job
  status) is kept exactly as for a job that runs: started when handed over, heartbeats while it runs
  (one pipeline for all), finished when its task ended. The task row is the record (lease, heartbeat,
  reaper); the registries only mirror it, so the dashboard never calls a running task abandoned;
- SIGTERM/SIGINT: no new job is taken, the tasks held may run WORKER_SHUTDOWN_GRACE_SECONDS more, the
  rest end failed/worker_lost, then the worker leaves. A second signal shortens the grace to nothing.

Any other job function runs in-line, as SimpleWorker runs it.
"""
import logging
import signal
import threading
import time

import redis
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from .supervisor import Runtime

logger = logging.getLogger("runtime.worker")

TASK_JOB = "tasks.jobs.run_task"
# How often, while it waits for a slot, the worker refreshes its own and its jobs' heartbeats.
KEEPALIVE_SECONDS = 10.0
# How long a job's entry in RQ's started registry lives without a refresh (refreshed every KEEPALIVE_SECONDS).
JOB_HEARTBEAT_TTL = 120
# RQ's own worker heartbeat and state writes, at most this often (it makes them around every job taken).
BEAT_EVERY_SECONDS = 1.0


class ConcurrentWorker(SimpleWorker):
    def __init__(self, *args, runtime: Runtime, grace_seconds: float, on_keepalive=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime
        self.grace_seconds = grace_seconds
        self.on_keepalive = on_keepalive
        self._held: dict[str, tuple] = {}  # execution id -> (job, execution), for the heartbeats
        self._held_lock = threading.Lock()
        self._interruptible = False  # True while the main thread waits: a stop signal ends the wait
        self._cold = False
        self._last_keepalive = 0.0
        self._last_beat = float("-inf")
        self._last_suspension_check = float("-inf")
        self._last_state: tuple | None = None  # (state, monotonic time) last written

    # -- taking jobs ----------------------------------------------------------------------------

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        self._interruptible = True
        try:
            while not self.runtime.wait_for_slot(KEEPALIVE_SECONDS):
                self.keepalive()
                if self._stop_requested:
                    raise StopRequested()
            self.keepalive(every=KEEPALIVE_SECONDS)
            return super().dequeue_job_and_maintain_ttl(
                min(timeout, KEEPALIVE_SECONDS) if timeout is not None else None, max_idle_time
            )
        finally:
            self._interruptible = False

    @property
    def dequeue_timeout(self) -> int:
        # A short blocking pop, so that the running jobs' heartbeats keep coming while the queue is empty.
        return int(KEEPALIVE_SECONDS)

    def execute_job(self, job, queue):
        if job.func_name != TASK_JOB or not job.args:
            return super().execute_job(job, queue)
        try:
            execution = self._prepare(job, queue)
        except redis.exceptions.RedisError:
            # Redis went away after the job was taken: the task row is the record, so the task runs
            # anyway; RQ's own maintenance puts the job back, and whoever takes it again finds the
            # task no longer queued.
            logger.warning("job %s: RQ's bookkeeping failed; running its task regardless", job.id, exc_info=True)
            execution = None
            self._last_state = None
        job.started_at = now()
        if execution is not None:
            with self._held_lock:
                self._held[execution.id] = (job, execution)
        self.runtime.submit(int(job.args[0]), on_end=lambda: self._job_ended(job, queue, execution))

    def _prepare(self, job, queue) -> Execution:
        """RQ's prepare_execution and prepare_job_execution (rq 3.0), written into one transaction instead of
        two: the execution record, the started registry, the worker's state and heartbeat, the job's status
        and heartbeat, and the job out of the intermediate queue, in one round trip. (The process title RQ
        sets there, "Processing <job> since ...", is not set: this worker runs many jobs at once.)"""
        ttl = self.get_heartbeat_ttl(job)
        with self.connection.pipeline() as pipe:
            execution = Execution.create(job, ttl, pipeline=pipe, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            self.heartbeat(ttl, pipeline=pipe)
            job.heartbeat(now(), ttl, pipeline=pipe)
            job.prepare_for_execution(self.name, pipeline=pipe)
            pipe.persist(job.key)
            if len(self.queues) == 1:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
            try:
                pipe.execute()
            except redis.exceptions.RedisError:
                self.executions.pop(execution.id, None)  # never written: nothing will clean it up
                raise
        return execution

    def _job_ended(self, job, queue, execution) -> None:
        """On the runtime's bookkeeping thread: RQ's success path, as if the job function had returned."""
        if execution is None:
            return
        with self._held_lock:
            self._held.pop(execution.id, None)
        for attempt in range(30):  # through a Redis restart
            try:
                self._finalize_success(job, queue, execution, None)
                return
            except redis.exceptions.RedisError:
                time.sleep(1)
        logger.warning("job %s: could not be marked finished in RQ", job.id)

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return JOB_HEARTBEAT_TTL if job.func_name == TASK_JOB else super().get_heartbeat_ttl(job, working_time)

    def set_state(self, state, pipeline=None):
        # The dashboard shows the worker busy while it holds tasks, though its loop waits for jobs.
        if state == WorkerStatus.IDLE and self.runtime.busy:
            state = WorkerStatus.BUSY
        if pipeline is None:
            # RQ writes the state around every job taken; the same state again within a second is not news
            last = self._last_state
            if last is not None and last[0] == state and time.monotonic() - last[1] < BEAT_EVERY_SECONDS:
                return
            self._last_state = (state, time.monotonic())
        else:
            # written with other changes (RQ's execution record, every job taken): counted as written, or
            # the state would go out again, alone, at the next job's dequeue; execute_job forgets it if
            # that pipeline fails
            self._last_state = (state, time.monotonic())
        try:
            super().set_state(state, pipeline=pipeline)
        except redis.exceptions.RedisError:
            logger.warning("worker state update failed (Redis)")

    def keepalive(self, every: float = 0.0) -> None:
        """The worker's heartbeat and every held job's, in one pipeline."""
        if time.monotonic() - self._last_keepalive < every:
            return
        self._last_keepalive = time.monotonic()
        with self._held_lock:
            held = list(self._held.values())
        try:
            with self.connection.pipeline() as pipe:
                self.heartbeat(pipeline=pipe)
                for job, execution in held:
                    execution.heartbeat(job.started_job_registry, JOB_HEARTBEAT_TTL, pipeline=pipe)
                    job.heartbeat(now(), JOB_HEARTBEAT_TTL, pipeline=pipe, xx=True)
                pipe.execute()
        except Exception:  # noqa: BLE001 - Redis away: the task rows are the record; retried next time
            logger.warning("worker heartbeat failed", exc_info=True)
        if self.on_keepalive is not None:
            self.on_keepalive()

    def heartbeat(self, *args, **kwargs):
        if kwargs.get("pipeline") is not None:
            return super().heartbeat(*args, **kwargs)
        if not args and not kwargs:
            # RQ beats before and after every job it takes (three round trips each); the worker's key lives
            # worker_ttl + 60 s, so once a second is plenty however fast jobs come
            if time.monotonic() - self._last_beat < BEAT_EVERY_SECONDS:
                return
        self._last_beat = time.monotonic()
        try:
            super().heartbeat(*args, **kwargs)
        except redis.exceptions.RedisError:
            logger.warning("worker heartbeat failed (Redis)", exc_info=True)
        if self.on_keepalive is not None:
            self.on_keepalive()

    # RQ's loop quits on a Redis error outside its blocking pop; this worker holds running tasks, so it
    # rides a Redis restart out instead (the tasks keep running; their rows are the record).

    def check_for_suspension(self, burst: bool):
        # RQ asks Redis before every job it takes; `rq suspend` is an operator's command, a second's delay in
        # seeing it is nothing, a round trip per job in a burst is not
        if time.monotonic() - self._last_suspension_check < BEAT_EVERY_SECONDS:
            return None
        try:
            result = super().check_for_suspension(burst)
        except redis.exceptions.RedisError:
            logger.warning("suspension check failed (Redis)")
            time.sleep(1)
            return None
        self._last_suspension_check = time.monotonic()  # not suspended (any more): RQ waited while it was
        return result

    def run_maintenance_tasks(self):
        try:
            return super().run_maintenance_tasks()
        except redis.exceptions.RedisError:
            logger.warning("RQ maintenance failed (Redis)")

    # -- stopping -------------------------------------------------------------------------------

    def request_stop(self, signum, frame):
        """Warm shutdown: take no new job; the held tasks get the grace period (teardown)."""
        self._shutdown_requested_date = now()
        self._stop_requested = True
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)
        logger.info("worker %s: stopping; %s task(s) held", self.name, self.runtime.busy)
        if self._interruptible:
            raise StopRequested()

    def request_force_stop(self, signum, frame):
        if (now() - self._shutdown_requested_date).total_seconds() < 1:
            return  # the same signal sent twice (to the process and its group)
        logger.warning("worker %s: cold shutdown", self.name)
        self._cold = True
        raise SystemExit()

    def work(self, burst: bool = False, *args, **kwargs):
        self._burst = burst
        return super().work(burst, *args, **kwargs)

    def teardown(self):
        if getattr(self, "_burst", False) and not self._stop_requested and not self._cold:
            # --burst: the queue is empty; the tasks taken still run to their end
            while self.runtime.busy and not self._stop_requested:
                time.sleep(0.1)
                self.keepalive(every=KEEPALIVE_SECONDS)
        self.runtime.shutdown(0 if self._cold else self.grace_seconds)
        super().teardown()
