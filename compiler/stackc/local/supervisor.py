"""Runs local processes for ``stackc up``: start, watch until ready, stop everything.

Each child gets its own process group and dies with stackc (``PR_SET_PDEATHSIG`` on Linux), so
neither Ctrl-C, SIGTERM nor a crash of stackc leaves engines running.
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
from typing import TextIO

import attrs

from stackc.local.processes import LocalProcess

_PR_SET_PDEATHSIG = 1
STARTING, LOADING, READY, FAILED = "starting", "loading", "ready", "failed"


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: stop() still cleans up on every normal exit


@attrs.define
class Running:
    spec: LocalProcess
    popen: subprocess.Popen
    started: float
    state: str = STARTING
    since_ready: float | None = None


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

    def start(self, processes: Sequence[LocalProcess]) -> None:
        for spec in processes:
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            with open(spec.log, "ab") as log:
                popen = subprocess.Popen(
                    spec.argv, env=dict(spec.env), stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
                )
            self.running.append(Running(spec, popen, time.monotonic()))

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

    def newly_exited(self) -> list[Running]:
        """Processes that ended since the last call (each reported once)."""
        ended = [r for r in self.running if r.state != FAILED and r.popen.poll() is not None]
        for item in ended:
            item.state = FAILED
        return ended

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
            _signal_group(item.popen, signal.SIGKILL)
            item.popen.wait()


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
