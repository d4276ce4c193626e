"""Work run in forked workers gives exactly the serial results, and fails exactly as the serial run fails."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from stackc.output import parallel

PARENT = os.getpid()


@pytest.fixture
def two_cpus(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Workers are forked even on a one-CPU machine; the list counts them."""
    forked: list[int] = []
    fork = os.fork

    def counted() -> int:
        pid = fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(parallel, "usable_cpus", lambda: 2)
    monkeypatch.setattr(parallel.os, "fork", counted)
    return forked


def _square_with_origin(item: int) -> tuple[int, bool]:
    return item * item, os.getpid() == PARENT


def test_workers_run_a_share_and_results_keep_their_order(two_cpus: list[int]) -> None:
    results = parallel.in_parallel(_square_with_origin, list(range(7)), jobs=2)
    assert [value for value, _ in results] == [item * item for item in range(7)]
    assert {in_parent for _, in_parent in results} == {True, False}
    assert len(two_cpus) == 1


@settings(max_examples=20, deadline=None)
@given(items=st.lists(st.integers(0, 50), max_size=6), jobs=st.integers(1, 4))
def test_any_items_give_the_serial_results(items: list[int], jobs: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parallel, "usable_cpus", lambda: 2)
        assert parallel.in_parallel(lambda item: item * 3, items, jobs, weight=float) == [item * 3 for item in items]


def _fails_on(bad: set[int]):
    def function(item: int) -> int:
        if item in bad:
            raise ValueError(f"item {item}")
        return item
    return function


@pytest.mark.parametrize("bad", [{0}, {1}, {1, 2}, {3, 0}])
def test_the_first_failing_item_raises_whichever_process_ran_it(two_cpus: list[int], bad: set[int]) -> None:
    with pytest.raises(ValueError, match=f"item {min(bad)}"):
        parallel.in_parallel(_fails_on(bad), [0, 1, 2, 3], jobs=2)


def _dies_in_a_worker(item: int) -> int:
    if os.getpid() != PARENT:
        os._exit(3)
    return item + 1


def _unpicklable_in_a_worker(item: int) -> object:
    return (lambda: item) if os.getpid() != PARENT else item


def test_a_share_whose_worker_dies_is_done_again_here(two_cpus: list[int]) -> None:
    assert parallel.in_parallel(_dies_in_a_worker, [1, 2, 3], jobs=2) == [2, 3, 4]
    assert len(two_cpus) == 1


def test_results_that_cannot_be_sent_back_are_made_again_here(two_cpus: list[int]) -> None:
    assert parallel.in_parallel(_unpicklable_in_a_worker, [1, 2], jobs=2) == [1, 2]


def test_heaviest_items_are_dealt_first(two_cpus: list[int]) -> None:
    dealt_in_order = parallel.in_parallel(_square_with_origin, [1, 2, 3, 4], jobs=2)
    assert [in_parent for _, in_parent in dealt_in_order] == [True, False, True, False]
    heaviest_first = parallel.in_parallel(_square_with_origin, [1, 2, 3, 4], jobs=2, weight=float)
    assert [in_parent for _, in_parent in heaviest_first] == [False, True, False, True]  # 4 and 2 here


def test_a_process_with_other_threads_never_forks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "fork", lambda: pytest.fail("forked beside another thread"))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert parallel.usable_cpus() == 1
        assert parallel.in_parallel(lambda item: item, [1, 2, 3], jobs=4) == [1, 2, 3]
    finally:
        stop.set()
        other.join()


def _slow_in_a_worker(item: int) -> int:
    if os.getpid() != PARENT:
        time.sleep(5 if item == 2 else 0)
    return item


def test_an_interrupt_while_collecting_propagates_and_leaves_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 3)
    forked: list[int] = []
    fork = os.fork
    monkeypatch.setattr(parallel.os, "fork", lambda: (lambda pid: forked.append(pid) or pid)(fork()))

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(KeyboardInterrupt):
            parallel.in_parallel(_slow_in_a_worker, [0, 1, 2], jobs=3)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(forked) == 2
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: none is left running
