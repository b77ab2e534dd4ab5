"""The garbage collector of a long-lived server process (web, worker), set once it has loaded.

Measured in a burst of trivial tasks (perf, 2026-12-04): the collector was 3.4% of the web processes'
CPU. Two standard settings, as large Python services use them (Instagram's gc.freeze() write-up, the
CPython docs of gc.freeze):

- gc.freeze(): what was loaded at start (Django, DRF, AgentChat's imports: hundreds of thousands of
  objects that live as long as the process) moves to a permanent generation, which no collection
  walks again;
- a first-generation threshold of GEN0_THRESHOLD container allocations instead of 700: a request's
  objects are mostly freed by their reference counts before a collection would look at them, so
  fewer collections walk fewer survivors. Cyclic garbage waits a little longer (at most that many
  allocations) before it is freed.
"""
import gc

GEN0_THRESHOLD = 10_000


def settle() -> None:
    """Call once the process has loaded what it serves with (before it takes its first request or job)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
