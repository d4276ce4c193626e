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

from stackc.local import LocalProcess

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


def last_line(path: os.PathLike) -> str:
    try:
        lines = [line for line in open(path, encoding="utf-8", errors="replace").read().splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-200:] if lines else ""


class Supervisor:
    def __init__(self, stream: TextIO = sys.stderr):
        self.running: list[Running] = []
        self.stream = stream
        self.live = stream.isatty()
        self._drawn = 0

    def start(self, processes: Sequence[LocalProcess]) -> None:
        for spec in processes:
            spec.log.parent.mkdir(parents=True, exist_ok=True)
            with open(spec.log, "ab") as log:
                popen = subprocess.Popen(
                    spec.argv, env={**os.environ, **spec.env}, stdin=subprocess.DEVNULL, stdout=log,
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
            self._draw(watched)
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
            text += f"  exit {item.popen.returncode}: {last_line(item.spec.log)}  (log: {item.spec.log})"
        return text

    def _draw(self, items: Sequence[Running]) -> None:
        if not self.live:
            return
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F")
        for item in items:
            self.stream.write("\x1b[2K" + self._line(item) + "\n")
        self._drawn = len(items)
        self.stream.flush()

    def failed(self) -> list[Running]:
        return [r for r in self.running if r.state == FAILED or r.popen.poll() is not None]

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
    except (ProcessLookupError, PermissionError):
        pass
