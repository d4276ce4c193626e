"""stackc up with the real llama-server: two replicas behind the router, the openai client, a clean stop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from stackc.local.processes import accelerator_present
from stackc.testing import local_llama_server, write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]


def children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (engines run in their own sessions but stay our children)."""
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        for path in Path("/proc").glob(f"{parent}/task/*/children"):
            for child in map(int, path.read_text().split()):
                if child not in found:
                    found.add(child)
                    frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def test_up_serves_through_the_router_and_stops_everything(tmp_path: Path) -> None:
    local_llama_server()  # installed by the test extra on every supported CPU: never skipped
    from openai import OpenAI

    model = tmp_path / "tiny.gguf"
    write_tiny_gguf(model)
    process = subprocess.Popen(
        [sys.executable, "-m", "stackc", "up", "specs/local.toml", "--set", f"models.tiny.model={model}",
         "--state-dir", str(tmp_path / "state")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base_url = None
        deadline = time.monotonic() + 60
        while base_url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read()
            if match := re.match(r"OpenAI base URL: (\S+)", line):
                base_url = match.group(1)
        assert base_url, "stackc up printed no base URL"
        assert process.stdout.readline().strip() == "models: tiny, tiny-chat"
        client = OpenAI(base_url=base_url, api_key="unused")
        reply = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hello"}],
                                               max_tokens=6, temperature=0)
        assert reply.choices[0].message.content.strip()
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                                max_tokens=6, temperature=0, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip()
        for tenant in range(16):  # different prefixes spread over both replicas
            client.completions.create(model="tiny", prompt=f"tenant {tenant} says hello", max_tokens=2)
        metrics = httpx.get(base_url.removesuffix("/v1") + "/metrics").text
        served = [int(v) for v in re.findall(r'stackc_router_requests_total\{model="tiny",backend="[^"]+"\} (\d+)', metrics)]
        assert len(served) == 2 and all(count > 0 for count in served), metrics
        descendants = children(process.pid)
        assert len(descendants) >= 3  # two engines and the router
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130  # as a shell reports Ctrl-C
        time.sleep(0.2)
        assert [pid for pid in descendants if alive(pid)] == []
        assert (tmp_path / "state" / "logs" / "tiny-0.log").exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_a_missing_engine_binary_is_exit_2_with_the_install_hint(tmp_path: Path) -> None:
    environment = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "stackc", "up", "specs/local.toml", "--set", "models.tiny.model=/x.gguf"],
                            cwd=REPO, capture_output=True, text=True, env=environment, timeout=60)
    assert result.returncode == 2
    assert "error[E042] models.tiny.engine: '/app/llama-server' for engine 'llamacpp' is not installed" in result.stderr
    assert "install stackc's `local` extra" in result.stderr


@pytest.mark.skipif(accelerator_present("nvidia.com/gpu"), reason="this machine has a GPU")
def test_a_gpu_model_on_a_machine_without_one_names_the_model(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "stackc", "up", "specs/prod.toml"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "model 'llama-8b' needs 1 × nvidia.com/gpu and this machine has none" in result.stderr
    assert "--skip llama-8b" in result.stderr


FAKE_ENGINE = Path(__file__).resolve().parents[1] / "fakes" / "fake_engine.py"
FAKE_SPEC = f"""
version = 1
[stack]
name = "fake"
targets = ["manifests", "router"]
[models.echo]
engine = "command"
model = "{FAKE_ENGINE.parent}"
image = "example.com/fake-engine:1"
[models.echo.engine_options]
port = 9000
command = ["{sys.executable}", "{FAKE_ENGINE}"]
args = ["--host", "{{host}}", "--port", "{{port}}", "--served-model-name", "{{served_name}}"]
"""


def run_up(tmp_path: Path, *args: str, spec: str = FAKE_SPEC, env: dict | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
    """``stackc up`` in a subprocess whose temporary folder is ``tmp_path/tmp`` (to see what it leaves)."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    (tmp_path / "fake.toml").write_text(spec)
    return subprocess.run([sys.executable, "-m", "stackc", "up", str(tmp_path / "fake.toml"), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "TMPDIR": str(tmp_path / "tmp"), **(env or {})})


def test_an_engine_killed_by_sigill_is_named_with_its_log_and_nothing_is_left_behind(tmp_path: Path) -> None:
    result = run_up(tmp_path, spec=FAKE_SPEC.replace('"{served_name}"]', '"{served_name}", "--die-with", "SIGILL"]'))
    assert result.returncode == 2, result.stderr
    assert "killed by SIGILL: this binary needs CPU instructions this machine lacks" in result.stderr
    assert "| loading model" in result.stderr  # the log's tail is shown: the log itself is removed
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unknown_skip_names_are_an_error_with_a_hint(tmp_path: Path) -> None:
    result = run_up(tmp_path, "--skip", "ecko")
    assert result.returncode == 2
    assert "--skip:1:1: error[E045] unknown model 'ecko' in --skip (hint: did you mean 'echo'?)" in result.stderr


def test_api_keys_are_required_and_enforced_as_in_the_cluster(tmp_path: Path) -> None:
    spec = FAKE_SPEC + '[targets.router]\napi_keys = { name = "router-keys", key = "keys" }\n'
    missing = run_up(tmp_path, spec=spec, env={"STACKC_ROUTER_API_KEYS": ""})
    assert missing.returncode == 2
    assert "error[E044] targets.router.api_keys: the router requires API keys" in missing.stderr
    assert "STACKC_ROUTER_API_KEYS" in missing.stderr
    (tmp_path / "fake.toml").write_text(spec)
    process = subprocess.Popen([sys.executable, "-m", "stackc", "up", str(tmp_path / "fake.toml")], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "STACKC_ROUTER_API_KEYS": "first-key, second-key"})
    try:
        line = process.stdout.readline()
        assert line.startswith("OpenAI base URL: "), process.stderr.read() if process.poll() is not None else line
        base_url = line.split(": ", 1)[1].strip()
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{base_url}/chat/completions", json=request).status_code == 401
        for key in ("first-key", "second-key"):
            answer = httpx.post(f"{base_url}/chat/completions", json=request, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130  # as a shell reports Ctrl-C


def test_a_model_sharing_the_kv_cache_server_is_located() -> None:
    """stackc up runs no KV-cache server: an engine told of one would find nothing there."""
    result = subprocess.run([sys.executable, "-m", "stackc", "up", "specs/kv-cache-server.toml"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ("error[E125] models.mistral.kv_offload.remote: stackc up runs no KV-cache server, which model 'mistral' "
            "shares KV blocks through (hint: --set models.mistral.kv_offload.remote=false, or --skip mistral)"
            in result.stderr)


def groups_of(pids: set[int]) -> set[int]:
    """The process groups of ``pids`` (those still there)."""
    groups = set()
    for pid in pids:
        try:
            groups.add(int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[2]))
        except (OSError, IndexError):
            pass
    return groups


def left_in(groups: set[int]) -> list[int]:
    """Live (not zombie) processes in any of ``groups``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(") ", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(group) in groups and state != "Z":
            found.append(int(stat.parent.name))
    return found


def start_up(tmp_path: Path, spec: str, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """``stackc up`` in the background, once it printed its base URL."""
    (tmp_path / "fake.toml").write_text(spec)
    process = subprocess.Popen([sys.executable, "-m", "stackc", "up", str(tmp_path / "fake.toml"), *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **(env or {})})
    line = process.stdout.readline()
    if not line.startswith("OpenAI base URL: "):
        process.kill()
        pytest.fail(process.stderr.read())
    return process, line.split(": ", 1)[1].strip()


def forking_engine(tmp_path: Path) -> str:
    """FAKE_SPEC with an engine that starts a background child first, as a shell wrapper would, and a
    daemon that leaves its process group (``setsid``)."""
    script = tmp_path / "engine.sh"
    script.write_text(f'sleep 300 &\nsetsid sleep 301 &\nexec "{sys.executable}" "{FAKE_ENGINE}" "$@"\n')
    return FAKE_SPEC.replace(f'command = ["{sys.executable}", "{FAKE_ENGINE}"]', f'command = ["sh", "{script}"]')


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_nothing_an_engine_forked_outlives_up_however_it_ends(tmp_path: Path, signum: int, code: int) -> None:
    process, _ = start_up(tmp_path, forking_engine(tmp_path).replace("[models.echo]", "[models.echo]\nreplicas = 2"))
    daemons: set[int] = set()
    try:
        descendants = children(process.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in descendants if alive(pid)]
        assert sum(b"sleep\x00300" in command for command in commands) == 2  # each engine's background child
        daemons |= {pid for pid in descendants if alive(pid) and b"sleep\x00301" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        assert len(daemons) == 2
        groups = groups_of(descendants) - groups_of({process.pid}) - groups_of(daemons)
        assert len(groups) >= 4  # two engines, the router, the watchdog: each a group of its own
        process.send_signal(signum)
        assert process.wait(30) == code
        deadline = time.monotonic() + 15
        while left_in(groups) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left_in(groups) == []
        if signum != signal.SIGKILL:  # stackc up adopted them (a sub-reaper) and ended them; SIGKILL leaves no one to
            assert [pid for pid in daemons if alive(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
        for pid in daemons:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_replica_that_dies_restarts_with_backoff_while_the_router_routes_around_it(tmp_path: Path) -> None:
    failing = tmp_path / "fail"  # while it exists, the engine fails at once (a crash loop)
    script = tmp_path / "engine.sh"
    script.write_text(f'[ -e "{failing}" ] && exit 1\nexec "{sys.executable}" "{FAKE_ENGINE}" "$@"\n')
    spec = FAKE_SPEC.replace(f'command = ["{sys.executable}", "{FAKE_ENGINE}"]', f'command = ["sh", "{script}"]')
    process, base_url = start_up(tmp_path, spec.replace("[models.echo]", "[models.echo]\nreplicas = 2"))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
    reader.start()
    metrics = base_url.removesuffix("/v1") + "/metrics"

    def healthy() -> list[int]:
        return [int(v) for v in re.findall(r"stackc_router_backend_healthy\{[^}]*\} (\d+)", httpx.get(metrics).text)]

    def wait_for(condition, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)

    try:
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        engine = next(pid for pid in children(process.pid) if b"fake_engine" in Path(f"/proc/{pid}/cmdline").read_bytes())
        failing.touch()
        os.kill(engine, signal.SIGKILL)
        wait_for(lambda: any("restarting in 4s" in line for line in lines))
        restarts = [line for line in lines if "restarting in" in line]
        assert [re.findall(r"restarting in (\d+)s", line) for line in restarts] == [["1"], ["2"], ["4"]], restarts
        assert "ended: killed by SIGKILL" in restarts[0] and "ended: exit code 1" in restarts[1]
        wait_for(lambda: sorted(healthy()) == [0, 1])  # the router sees it down meanwhile…
        for _ in range(8):  # …and sends every request to the replica that runs
            assert httpx.post(f"{base_url}/chat/completions", json=request).status_code == 200
        failing.unlink()
        wait_for(lambda: healthy() == [1, 1])  # back after the 4 s wait, and routed to again
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130


def test_replicas_listen_where_the_port_placeholder_stands(tmp_path: Path) -> None:
    """{port} inside an argument, not after a flag stackc knows: each replica still gets its own port."""
    script = tmp_path / "engine.sh"
    script.write_text(f'address="${{1#--listen=}}"\nexec "{sys.executable}" "{FAKE_ENGINE}" --host "${{address%:*}}" '
                      f'--port "${{address##*:}}" --served-model-name echo\n')
    spec = FAKE_SPEC.replace(f'command = ["{sys.executable}", "{FAKE_ENGINE}"]', f'command = ["sh", "{script}"]')
    spec = spec.replace('args = ["--host", "{host}", "--port", "{port}", "--served-model-name", "{served_name}"]',
                        'args = ["--listen={host}:{port}"]').replace("[models.echo]", "[models.echo]\nreplicas = 3")
    process, base_url = start_up(tmp_path, spec)
    try:
        engines = [argv for pid in children(process.pid)
                   if b"fake_engine" in (argv := Path(f"/proc/{pid}/cmdline").read_bytes())]
        addresses = {tuple(re.findall(rb"--host\0([^\0]+)\0--port\0(\d+)", argv)) for argv in engines}
        assert len(engines) == len(addresses) == 3, addresses  # the script got --listen=HOST:PORT, each its own
        assert all(address[0][0] == b"127.0.0.1" for address in addresses)
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"{base_url}/chat/completions", json=request).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130


def test_replicas_of_a_command_without_the_port_placeholder_are_a_located_error(tmp_path: Path) -> None:
    spec = FAKE_SPEC.replace('"--port", "{port}"', '"--port", "9000"').replace("[models.echo]", "[models.echo]\nreplicas = 2")
    result = run_up(tmp_path, spec=spec)
    assert result.returncode == 2
    assert (f"{tmp_path / 'fake.toml'}:7:12: error[E047] models.echo.replicas: model 'echo' has 2 replicas, but its "
            "engine listens on port 9000 whatever stackc up asks" in result.stderr), result.stderr
    assert "a command engine takes its port where {port} stands in engine_options.args" in result.stderr


def test_a_busy_router_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_up(tmp_path, "--port", str(port))
    assert result.returncode == 2
    assert (f"--port:1:1: error[E048] port {port} is in use on this machine: the router can't listen there "
            "(hint: choose another --port, or leave --port out for a free one)" in result.stderr)
    assert "Traceback" not in result.stderr


def test_each_process_gets_only_the_environment_it_needs(tmp_path: Path) -> None:
    spec = (FAKE_SPEC + '[models.echo.security]\napi_key = { name = "echo-key", key = "key" }\n'
            '[targets.router]\napi_keys = { name = "router-keys", key = "keys" }\n')
    process, _ = start_up(tmp_path, spec, env={"STACKC_ROUTER_API_KEYS": "router-key", "STACKC_API_KEY": "engine-key",
                                               "AWS_SECRET_ACCESS_KEY": "cloud-key", "LANG": "C.UTF-8"})
    try:
        environments = {}
        for pid in children(process.pid):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            name = "engine" if b"fake_engine" in argv else "router" if b"stackc_router" in argv else None
            if name:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                environments[name] = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
        assert set(environments) == {"engine", "router"}
        for name, environ in environments.items():
            assert "STACKC_ROUTER_API_KEYS" not in environ and "AWS_SECRET_ACCESS_KEY" not in environ, name
            assert environ["LANG"] == "C.UTF-8" and "PATH" in environ
        assert environments["engine"]["STACKC_API_KEY"] == "engine-key"  # its own, from its Secret
        assert "STACKC_API_KEY" not in environments["router"]  # the router reads it from a file
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130


def test_a_local_model_file_that_does_not_exist_is_located_with_a_set_hint() -> None:
    result = subprocess.run([sys.executable, "-m", "stackc", "up", "specs/local.toml"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert ("specs/local.toml:13:9: error[E046] models.tiny.model: model 'tiny' loads from /models/tiny.gguf, which "
            "does not exist on this machine (hint: --set models.tiny.model=/path/to/tiny.gguf)" in result.stderr)


def test_ctrl_c_while_engines_load_exits_130_and_stops_them(tmp_path: Path) -> None:
    spec = forking_engine(tmp_path).replace('"{served_name}"]', '"{served_name}", "--startup-delay", "60"]')
    (tmp_path / "fake.toml").write_text(spec)
    process = subprocess.Popen([sys.executable, "-m", "stackc", "up", str(tmp_path / "fake.toml")], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "loading" not in (line := process.stderr.readline()):
            assert line, "stackc up ended before its engine loaded"
        groups = groups_of(children(process.pid)) - groups_of({process.pid})
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
        assert "stackc up: interrupted" in process.stderr.read()
        assert left_in(groups) == []
    finally:
        if process.poll() is None:
            process.kill()


def test_a_candidate_version_gets_its_share_and_the_testers_header_under_up(tmp_path: Path) -> None:
    """Issue 25's canary on real processes: stackc up runs the stable and candidate engines behind the router,
    which sends exactly ``traffic`` of every 100 requests, and every request with the header, to the candidate."""
    spec = FAKE_SPEC + ('[models.echo.candidate]\nengine_args = ["--reply-delay", "0"]\ntraffic = 25\n'
                        'header = "x-candidate"\n')
    process, base_url = start_up(tmp_path, spec)
    root = base_url.removesuffix("/v1")
    try:
        engines = {pid: b"--reply-delay" in argv for pid in children(process.pid)
                   if b"fake_engine" in (argv := Path(f"/proc/{pid}/cmdline").read_bytes())}
        assert sorted(engines.values()) == [False, True]  # one stable replica, one candidate replica
        deadline = time.monotonic() + 20
        while httpx.get(f"{root}/ready").json()["models"]["echo"]["candidate"]["ready"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        request = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}

        def by_candidate(headers: dict | None = None) -> bool:
            answer = httpx.post(f"{base_url}/chat/completions", json=request, headers=headers)
            assert answer.status_code == 200
            return engines[int(answer.json()["system_fingerprint"].removeprefix("pid-"))]

        with_share = [by_candidate() for _ in range(40)]
        assert sum(with_share) == 10
        assert all(by_candidate({"x-candidate": "true"}) for _ in range(5))
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130


def test_a_candidate_of_an_engine_that_keeps_its_port_is_a_located_error(tmp_path: Path) -> None:
    spec = FAKE_SPEC.replace('"--port", "{port}"', '"--port", "9000"') + "[models.echo.candidate]\ntraffic = 10\n"
    result = run_up(tmp_path, spec=spec)
    assert result.returncode == 2, result.stderr
    assert "error[E047] models.echo.candidate: model 'echo''s candidate runs an engine that listens on port 9000" \
        in result.stderr
