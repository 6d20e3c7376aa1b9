"""Scenarios side by side: each in a lab of its own, in a pool of worker processes.

A lab's Mininet state belongs to its process, and every run has its own prefix, so
labs in different processes never meet. The pool is the standard library's
(`concurrent.futures.ProcessPoolExecutor`), its workers forked from a server that has
the lab already imported. Most of a run is waiting (for a ban, for Dovecot's refusal,
for a retransmission), so more labs than cores keep the machine busy.

Results come back in the scenarios' order, whatever order they finish in. A signal
(to the command, or Ctrl-C to the whole terminal) stops the pool: no new lab boots,
every worker unwinds its lab's teardown, and `Interrupted` names all the runs torn down.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lab.errors import LabFailure
from lab.runtime import lifecycle
from lab.runtime.lifecycle import SIGNALS, Interrupted

Say = Callable[[str], None]
# What the forkserver imports once, so that each worker starts with it in memory.
PRELOAD = ["lab.engine.verify", "lab.runtime.lab", "lab.runtime.builder", "mininet.net",
           "lab.model.record"]
POLL = 0.05  # s: how often the progress of the workers is passed on


@dataclass(frozen=True)
class Stopped:
    """A worker's answer when a signal ended its scenario (its lab torn down, or none)."""

    signum: int
    torn_down: tuple[str, ...]


def timed(s: Any, say: Say) -> tuple[Any, Any]:
    """Run one scenario in a lab of its own: its result, and its record (site, rules, time)."""
    from lab.engine.verify import verify
    from lab.model.record import of_scenario

    started, clock = datetime.now(UTC), time.monotonic()
    with lifecycle.opened() as run:
        result = verify(s, run, say)
    return result, of_scenario(s, started, time.monotonic() - clock)


# -- in a worker ---------------------------------------------------------------------
# The pool's initializer hands these to each worker process: the standard library's way
# (a process's queue and event are inherited, never pickled with each task).
_said: Any = None
_stop: Any = None


def _worker_init(said: Any, stop: Any) -> None:
    global _said, _stop
    _said, _stop = said, stop
    # Between scenarios a signal is the parent's to handle; during one it unwinds the lab.
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _worker_run(s: Any) -> tuple[Any, Any] | Stopped:
    try:
        lifecycle.interrupt_on_signals()
        if _stop.is_set():  # the run was stopped before this scenario began
            return Stopped(signal.SIGTERM, ())
        return timed(s, _said.put)
    except Interrupted as exc:
        return Stopped(exc.signum, tuple(exc.torn_down))
    finally:
        for signum in SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


# -- in the command ------------------------------------------------------------------
def _cost(s: Any) -> float:
    """A rough guess of a scenario's seconds, from what its rows wait for: a guessing row
    for Dovecot's refusals, the first `after: unban` row for a lab's bantime, a mail row
    for its delivery. The longest start first, so that the last to finish is not one."""
    waits = {"guessing": 6.0, "guessing-465": 6.0, "mail": 0.5}
    rows = sum(waits.get(e.probe, 0.05) for e in s.expectations)
    return rows + (8.0 if any(e.after == "unban" for e in s.expectations) else 0.0) + (
        1.0 if s.traps else 0.0)


def run_side_by_side(scenarios: Sequence[Any], jobs: int, say: Say,
                     done: Callable[[int, Any, Any], None]) -> None:
    """Run the scenarios, `jobs` labs at a time; `done(n, result, record)` in their order.

    What `done` raises (and a signal while it runs) stops the pool as a signal does.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    said, stop = context.Queue(), context.Event()
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(scenarios)), mp_context=context,
                               initializer=_worker_init, initargs=(said, stop))
    futures: dict[int, Future[Any]] = {}
    try:
        for n in sorted(range(len(scenarios)), key=lambda n: -_cost(scenarios[n])):
            futures[n] = pool.submit(_worker_run, scenarios[n])
        for n in range(len(scenarios)):
            while not futures[n].done():
                wait(futures.values(), timeout=POLL, return_when=FIRST_COMPLETED)
                _relay(said, say)
            _relay(said, say)
            try:
                answer = futures[n].result()
            except BrokenProcessPool as exc:
                raise LabFailure(f"a worker process of the pool died ({exc}); its lab "
                                 "is removed") from exc
            if isinstance(answer, Stopped):
                raise Interrupted(answer.signum)
            done(n, *answer)
    except BaseException as exc:
        _stop_all(stop, futures, exc)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        said.close()


def _relay(said: Any, say: Say) -> None:
    with contextlib.suppress(queue.Empty):
        while True:
            say(said.get_nowait())


def _stop_all(stop: Any, futures: dict[int, Future[Any]],
              exc: BaseException) -> None:
    """No new lab; every running one torn down (its worker told by signal); wait for them.

    The runs torn down are added to `exc` when it is `Interrupted`. A worker that died
    left its run to `remove_stale`, done here too.
    """
    stop.set()
    for future in futures.values():
        future.cancel()
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGTERM
    for child in multiprocessing.active_children():
        if child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)
    torn_down: list[str] = []
    for future in futures.values():
        if future.cancelled():
            continue
        try:
            answer = future.result()
        except BaseException:  # a worker's own failure: its run is stale (removed below)
            continue
        if isinstance(answer, Stopped):
            torn_down += answer.torn_down
    with lifecycle.signals_deferred():
        lifecycle.remove_stale()
    if isinstance(exc, Interrupted):
        exc.torn_down += [p for p in torn_down if p not in exc.torn_down]
