"""stackc-llama-server takes llama-server's flags and variables, and refuses what it can't map."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stackc_plugins.engines.llamacpp_local import params


def test_flags_map_onto_llama_cpp_params(tmp_path) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    configured = params(["-m", "/m.gguf", "--host", "0.0.0.0", "--port", "0", "--alias", "a,b", "--metrics",
                         "-c", "2048", "-np", "2", "-t", "1", "--no-cache-prompt",
                         "--chat-template-file", str(template)], {})
    assert configured.model.path == "/m.gguf"
    assert configured.hostnames == ["0.0.0.0"] and configured.port == 0
    assert configured.model_alias == {"a", "b"}
    assert configured.endpoint_metrics and not configured.cache_prompt
    assert (configured.n_ctx, configured.n_parallel, configured.cpuparams.n_threads) == (2048, 2, 1)
    assert configured.chat_template == "{{ messages }}"


def test_llama_arg_variables_and_the_api_key_variable_are_read() -> None:
    configured = params([], {"LLAMA_ARG_MODEL": "/m.gguf", "LLAMA_ARG_PORT": "9", "LLAMA_API_KEY": "k1,k2",
                             "LLAMA_ARG_ENDPOINT_METRICS": "1", "LLAMA_ARG_CTX_SIZE": "512"})
    assert (configured.model.path, configured.port, configured.n_ctx) == ("/m.gguf", 9, 512)
    assert configured.api_keys == ["k1", "k2"] and configured.endpoint_metrics


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "/m.gguf", "--rope-scaling", "yarn"], "unrecognized arguments: --rope-scaling yarn"),
    (["--hf-repo", "org/repo"], "this runner loads a local GGUF file only"),
    (["--port", "80"], "-m/--model FILE is required"),
])
def test_what_it_cannot_run_is_exit_2_pointing_at_the_real_binary(argv: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "stackc_plugins.engines.llamacpp_local", *argv],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "llama-server on the PATH" in result.stderr


def test_without_xllamacpp_it_says_what_to_install(tmp_path) -> None:
    blocker = tmp_path / "xllamacpp.py"
    blocker.write_text("raise ImportError('not installed here')\n")
    result = subprocess.run([sys.executable, "-m", "stackc_plugins.engines.llamacpp_local", "-m", "/m.gguf"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 2 and "install stackc's `local` extra" in result.stderr
    assert "Traceback" not in result.stderr
