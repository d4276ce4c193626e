"""Independent pieces of a build side by side, on every CPU the process may use.

Emitting one target needs nothing of another's, and a large stack's targets each take tens of
milliseconds of pure Python: one process would run them one after the other. On Linux, forked
workers each take a share and send back what they made (pickled); the results are exactly the
serial ones, in the same order. Anything unusual runs serially instead, with the same outcome:
one CPU, a platform without a safe ``fork`` (macOS and Windows start processes afresh, which would
import everything again), a process with other threads (a child would inherit their locks held),
or a worker that fails for any reason (its share is done again here, so a plugin's error is raised
exactly as a serial run raises it).
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def usable_cpus() -> int:
    """The CPUs this process may run on where workers can be forked safely, else 1."""
    if sys.platform != "linux" or threading.active_count() > 1:
        return 1
    return len(os.sched_getaffinity(0))


def in_parallel(function: Callable[[T], R], items: Sequence[T], jobs: int,
                weight: Callable[[T], float] = lambda item: 1.0) -> list[R]:
    """``[function(item) for item in items]``, in up to ``jobs`` processes, the items dealt heaviest
    first by ``weight``. The first item (in ``items``' order) that raises, raises here."""
    jobs = min(jobs, len(items), usable_cpus())
    if jobs < 2:
        return [function(item) for item in items]
    heaviest_first = sorted(range(len(items)), key=lambda index: -weight(items[index]))
    shares = [heaviest_first[first::jobs] for first in range(jobs)]
    pending = [(*_fork(function, items, share), share) for share in shares[1:]]
    done: dict[int, R] = {}
    failed: dict[int, Exception] = {}
    try:
        for index in shares[0]:
            try:
                done[index] = function(items[index])
            except Exception as error:  # raised below in item order, as a serial run would
                failed[index] = error
        while pending:
            pid, descriptor, share = pending[0]
            results = _collect(pid, descriptor)
            del pending[0]
            os.close(descriptor)
            if results is not None:
                done.update(zip(share, results))
    finally:
        for pid, descriptor, _ in pending:  # interrupted: no worker outlives the build
            _stop(pid, descriptor)
    for index, item in enumerate(items):
        if index in failed:
            raise failed[index]
        if index not in done:  # its worker failed: run here, where its error (if any) is raised as usual
            done[index] = function(item)
    return [done[index] for index in range(len(items))]


def _fork(function: Callable[[T], R], items: Sequence[T], share: list[int]) -> tuple[int, int]:
    """A worker computing ``share`` and writing the pickled results to a pipe: (pid, read end)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: it never returns into the caller's code
        status = 1
        try:
            os.close(read_end)
            payload = pickle.dumps([function(items[index]) for index in share], pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def _collect(pid: int, descriptor: int) -> list[R] | None:
    """A worker's results, or None when it failed (exit status, a signal, or results that don't unpickle)."""
    with os.fdopen(descriptor, "rb", closefd=False) as pipe:  # the caller closes it, once
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        return pickle.loads(payload)
    except Exception:  # a plugin's type that pickles but doesn't load back: done again in this process
        return None


def _stop(pid: int, descriptor: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # already gone (or reaped by _collect)
        pass
    os.close(descriptor)
