"""Runs local processes for ``stackc up``: start, watch until ready, restart what dies, stop everything.

Each child gets its own process group, which ``stop`` ends whole (what an engine forked too),
and with ``adopt_orphans`` what left its group as well. Should stackc itself be killed, its
engines get SIGTERM (``PR_SET_PDEATHSIG`` on Linux) and a watchdog process
(``stackc.local.watchdog``) ends their groups.
"""

from __future__ import annotations

import ctypes
import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from stackc.local.processes import LocalProcess
from stackc.records import define

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
#: rounds of ending adopted processes (each round's may have forked before they died)
_ADOPTED_ROUNDS = 10
STARTING, LOADING, READY, FAILED = "starting", "loading", "ready", "failed"


def _prctl(option: int, value: int) -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value) == 0
    except (OSError, AttributeError):
        return False  # not Linux: stop() still ends every process group on every normal exit


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux ``/proc``; empty elsewhere)."""
    found: set[int] = set()
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found.update(map(int, path.read_text().split()))
        except OSError:
            pass
    return found


@define
class Running:
    spec: LocalProcess
    popen: subprocess.Popen
    started: float
    state: str = STARTING
    since_ready: float | None = None
    #: crashes since it last ran ``STABLE_SECONDS``, which set the next restart's delay
    crashes: int = 0
    #: when it is started again after a crash (None: it runs)
    restart_at: float | None = None


#: restarts wait 1 s, 2 s, 4 s… up to ``MAX_BACKOFF_SECONDS``; a process that ran this long starts over at 1 s
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0


def backoff(crashes: int) -> float:
    """Seconds before the restart that follows the ``crashes``-th crash in a row (1, 2, 4…, bounded)."""
    return min(2.0 ** (crashes - 1), MAX_BACKOFF_SECONDS)


def probe(port: int, path: str, timeout: float = 0.5) -> str:
    """STARTING while the port is closed, LOADING while it answers non-200, else READY."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        status = connection.getresponse().status
    except (ConnectionError, OSError, http.client.HTTPException):
        return STARTING
    finally:
        connection.close()
    return READY if status == 200 else LOADING


_SIGNAL_CAUSES = {
    signal.SIGILL: "this binary needs CPU instructions this machine lacks (it was built for another CPU)",
    signal.SIGKILL: "killed from outside, often by the kernel when memory ran out",
    signal.SIGSEGV: "the program crashed",
    signal.SIGBUS: "the program crashed",
    signal.SIGABRT: "the program aborted",
}


def describe_exit(returncode: int) -> str:
    """Why a process ended, in words: the signal by name and what it usually means, or the exit code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        signum = signal.Signals(-returncode)
    except ValueError:
        return f"killed by signal {-returncode}"
    cause = _SIGNAL_CAUSES.get(signum)
    return f"killed by {signum.name}" + (f": {cause}" if cause else "")


def last_lines(path: os.PathLike, count: int = 1) -> list[str]:
    """The last non-blank lines of a log, each cut to 300 characters."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines = [line for line in log.read().splitlines() if line.strip()]
    except OSError:
        return []
    return [line if len(line) <= 300 else line[:299] + "…" for line in lines[-count:]]


class Supervisor:
    """Starts processes and shows their state: one live block on a terminal, else one line per change."""

    def __init__(self, stream: TextIO = sys.stderr, live: bool | None = None):
        self.running: list[Running] = []
        self.stream = stream
        self.live = _is_terminal(stream) and _is_terminal(sys.stdout) if live is None else live
        self._drawn = 0
        self._watchdog: subprocess.Popen | None = None
        self._adopting = False

    def adopt_orphans(self) -> None:
        """Become the sub-reaper of everything started here (Linux): a process that leaves its engine's
        group (a daemon's ``setsid``) is reparented to this one when its parent dies, and ``stop`` ends it.

        Only for a process whose every child is the supervisor's (``stackc up``): ``stop`` ends any other."""
        self._adopting = _prctl(_PR_SET_CHILD_SUBREAPER, 1)

    def start(self, processes: Sequence[LocalProcess]) -> None:
        for spec in processes:
            self.running.append(Running(spec, self._launch(spec), time.monotonic()))

    def _launch(self, spec: LocalProcess) -> subprocess.Popen:
        """Start one process in a new process group (its id is the process's), with only ``spec.env``."""
        if self._watchdog is None:
            self._watchdog = subprocess.Popen([sys.executable, "-m", "stackc.local.watchdog"], stdin=subprocess.PIPE,
                                              stdout=subprocess.DEVNULL, start_new_session=True, text=True)
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log, "ab") as log:
            popen = subprocess.Popen(
                spec.argv, env=dict(spec.env), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )
        self._tell_watchdog(popen.pid)
        return popen

    def _tell_watchdog(self, group: int) -> None:
        """A group to end should stackc die (``-group``: one already ended here)."""
        assert self._watchdog is not None and self._watchdog.stdin is not None
        try:
            self._watchdog.stdin.write(f"{group}\n")
            self._watchdog.stdin.flush()
        except OSError:  # the watchdog is gone (killed from outside): stop() still ends every group
            pass

    def wait_ready(self, timeout: float, names: Sequence[str] | None = None,
                   interrupted: Callable[[], bool] = lambda: False) -> bool:
        """Poll until every (named) process is ready; False as soon as one fails or time runs out."""
        watched = [r for r in self.running if names is None or r.spec.name in names]
        deadline = time.monotonic() + timeout
        while not interrupted():
            for item in watched:
                if item.state in (READY, FAILED):
                    continue
                if item.popen.poll() is not None:
                    self._set(item, FAILED)
                    continue
                state = probe(item.spec.port, item.spec.ready_path)
                if state != item.state:
                    self._set(item, state)
            self._draw()
            if any(item.state == FAILED for item in watched):
                return False
            if all(item.state == READY for item in watched):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return False

    def _set(self, item: Running, state: str) -> None:
        item.state = state
        if state == READY:
            item.since_ready = time.monotonic()
        if not self.live:
            self.stream.write(self._line(item) + "\n")
            self.stream.flush()

    def _line(self, item: Running) -> str:
        elapsed = (item.since_ready or time.monotonic()) - item.started
        text = f"  {item.spec.name:<24} {item.state:<9} {elapsed:6.1f}s"
        if item.state == FAILED:
            text += f"  {self.cause(item)}"
        return text

    @staticmethod
    def cause(item: Running) -> str:
        """The exit, the log's last line and where the log is."""
        returncode = item.popen.poll()
        ended = describe_exit(returncode) if returncode is not None else "stopped answering"
        last = "".join(last_lines(item.spec.log))
        return f"{ended}{f' — {last}' if last else ''} (log: {item.spec.log})"

    def _draw(self) -> None:
        """Redraw the status block in place (cursor up, clear each line): nothing else writes inside it."""
        if not self.live:
            return
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F")
        for item in self.running:
            self.stream.write("\x1b[2K" + self._line(item) + "\n")
        self._drawn = len(self.running)
        self.stream.flush()

    def settle(self) -> None:
        """End the live block: what is printed next goes below it, and later changes are plain lines."""
        self._draw()
        self.live = False

    def tend(self) -> None:
        """Once everything ran: restart what ended, after a back-off that doubles with each crash in a row.

        A restarted engine is not ready until its probe says so; the router's health checks keep
        it out of rotation meanwhile, as a Kubernetes readiness probe keeps a pod out of its Service.
        """
        now = time.monotonic()
        for item in self.running:
            if item.restart_at is None and item.popen.poll() is not None:
                self._end_group(item.popen)
                item.crashes = 1 if item.since_ready and now - item.since_ready >= STABLE_SECONDS else item.crashes + 1
                delay = backoff(item.crashes)
                item.restart_at, item.state = now + delay, FAILED
                self._say(f"stackc up: {item.spec.name} ended: {self.cause(item)}; restarting in {delay:.0f}s")
            elif item.restart_at is not None and now >= item.restart_at:
                item.popen, item.started, item.since_ready, item.restart_at = self._launch(item.spec), now, None, None
                self._set(item, STARTING)
            elif item.restart_at is None and item.state != READY:
                state = probe(item.spec.port, item.spec.ready_path)
                if state != item.state:
                    self._set(item, state)
        self._draw()

    def _say(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process group, then SIGKILL what is left after ``grace`` seconds."""
        for item in self.running:
            _signal_group(item.popen, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for item in self.running:
            try:
                item.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for item in self.running:
            self._end_group(item.popen)
        if self._adopting:
            self._end_adopted()
        if self._watchdog is not None:
            self._watchdog.stdin.close()  # type: ignore[union-attr]
            self._watchdog.wait()

    def _end_adopted(self) -> None:
        """Kill and reap the processes reparented here: every child that is not one this supervisor started."""
        started = {item.popen.pid for item in self.running} | {self._watchdog.pid if self._watchdog else 0}
        for _ in range(_ADOPTED_ROUNDS):
            adopted = children_of(os.getpid()) - started
            if not adopted:
                return
            for pid in adopted:
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ChildProcessError, ProcessLookupError):  # gone and reaped meanwhile
                    pass

    def _end_group(self, popen: subprocess.Popen) -> None:
        """Kill what is left of a process's group (its leader ended: what it forked may not have) and reap it."""
        _signal_group(popen, signal.SIGKILL)
        popen.wait()
        self._tell_watchdog(-popen.pid)


def _signal_group(popen: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(popen.pid, signum)
    except OSError:  # already gone (ESRCH), or reaped and its id reused (EPERM)
        pass


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") not in ("", "dumb")
    except (AttributeError, ValueError):
        return False
