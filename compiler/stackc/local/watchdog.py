"""Ends ``stackc up``'s process groups once ``stackc up`` is gone, however it ended (SIGKILL too).

``stackc up`` starts this first and writes each engine's process group id to its stdin (``-ID``
when it reaped that group itself). End of file means ``stackc up`` exited or was killed: nothing
else holds the pipe's other end (the engines don't inherit it), so the groups it still has, with
every process an engine forked, get SIGTERM and, after a grace period, SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable

GRACE_SECONDS = 5.0


def end_groups(groups: Iterable[int], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each process group, then SIGKILL those still there after ``grace`` seconds."""
    alive = {group for group in groups if _signal(group, signal.SIGTERM)}
    deadline = time.monotonic() + grace
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {group for group in alive if _signal(group, 0)}
    for group in alive:
        _signal(group, signal.SIGKILL)


def _signal(group: int, signum: int) -> bool:
    try:
        os.killpg(group, signum)
    except OSError:  # gone (ESRCH)
        return False
    return True


def main() -> None:
    groups: set[int] = set()
    for line in sys.stdin:
        group = int(line)
        if group > 0:
            groups.add(group)
        else:
            groups.discard(-group)
    end_groups(groups)


if __name__ == "__main__":
    main()
