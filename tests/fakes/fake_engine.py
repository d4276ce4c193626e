"""A tiny OpenAI-compatible engine for tests (stdlib only): python fake_engine.py --port P --served-model-name A [B…]

Answers /health, /v1/models, /v1/chat/completions and /v1/completions (JSON or SSE), and
/metrics in vLLM's names. Each reply says which process served it (``system_fingerprint``).
LoRA adapters as vLLM serves them: ``--lora-modules NAME=PATH…`` at start, and with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` ``POST /v1/load_lora_adapter`` while it runs.
Prefill/decode disaggregation as vLLM's NixlConnector speaks it to a router: a request with
``kv_transfer_params.do_remote_decode`` is answered with the parameters a decode replica pulls the
KV cache with. ``GET /debug/requests`` lists the bodies of the POSTs it received, for tests to
see what a router sent. An API key as vLLM takes it (``--api-key`` or ``VLLM_API_KEY``): every
``/v1`` request without ``Authorization: Bearer KEY`` is 401; /health and /metrics stay open.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", nargs="+", default=["fake"])
    parser.add_argument("--lora-modules", nargs="*", default=[], metavar="NAME=PATH")
    parser.add_argument("--startup-delay", type=float, default=0.0)
    parser.add_argument("--reply-delay", type=float, default=0.0, help="seconds before answering a POST")
    parser.add_argument("--stream-interval", type=float, default=0.0, help="seconds before each streamed event")
    parser.add_argument("--die-with", metavar="SIGNAL", help="log a line, then kill itself with this signal (e.g. SIGILL)")
    parser.add_argument("--api-key", default=os.environ.get("VLLM_API_KEY") or None,
                        help="as vLLM: /v1 requests need 'Authorization: Bearer KEY' (default: $VLLM_API_KEY)")
    args = parser.parse_args()
    if args.die_with:
        print("loading model", flush=True)
        os.kill(os.getpid(), signal.Signals[args.die_with])
    names = args.served_model_name
    adapters = dict(module.split("=", 1) for module in args.lora_modules)  # name -> path
    runtime_loading = os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() in ("true", "1")
    started = time.monotonic()
    served = [0]  # requests answered, for the counters on /metrics
    received: list[dict] = []  # every POST body, for /debug/requests

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # as asyncio servers (uvicorn: vLLM, SGLang): the head and body, written apart, leave at once
        # instead of the body waiting ~40 ms for the peer's delayed ACK
        disable_nagle_algorithm = True

        def log_message(self, *_):
            pass

        def reply(self, status: int, body: dict | str, content_type: str = "application/json") -> None:
            data = (json.dumps(body) if isinstance(body, dict) else body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def refused(self) -> bool:
            """As vLLM's API-key middleware: /v1 needs the key, answered 401 without it."""
            if args.api_key and self.path.startswith("/v1") and \
                    self.headers.get("Authorization") != f"Bearer {args.api_key}":
                self.reply(401, {"error": "Unauthorized"})
                return True
            return False

        def do_GET(self) -> None:
            if self.refused():
                return
            if self.path == "/health":
                loading = time.monotonic() - started < args.startup_delay
                self.reply(503 if loading else 200, {"status": "loading" if loading else "ok"})
            elif self.path == "/debug/requests":
                self.reply(200, {"requests": received})
            elif self.path == "/v1/models":
                data = [{"id": n, "object": "model", "owned_by": "fake"} for n in names]
                data += [{"id": n, "object": "model", "owned_by": "fake", "parent": names[0], "root": path}
                         for n, path in sorted(adapters.items())]
                self.reply(200, {"object": "list", "data": data})
            elif self.path == "/metrics":
                done = served[0]
                self.reply(200, "vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"
                           # as vLLM: an info gauge whose labels (not sorted) give the KV cache's size
                           'vllm:cache_config_info{num_gpu_blocks="2048",cache_dtype="auto",block_size="16"} 1.0\n'
                           # the series dashboards, alerts and autoscalers read, growing with requests served
                           f"vllm:kv_cache_usage_perc 0.0\nvllm:generation_tokens_total {2 * done}\n"
                           f"vllm:prefix_cache_queries_total {10 * done}\nvllm:prefix_cache_hits_total {5 * done}\n"
                           f'vllm:time_to_first_token_seconds_bucket{{le="0.1"}} {done}\n'
                           f'vllm:time_to_first_token_seconds_bucket{{le="+Inf"}} {done}\n'
                           f"vllm:time_to_first_token_seconds_sum {0.05 * done}\n"
                           f"vllm:time_to_first_token_seconds_count {done}\n",
                           "text/plain")
            else:
                self.reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if self.refused():
                return
            received.append(body)
            if self.path == "/v1/load_lora_adapter" and runtime_loading:
                if body.get("lora_name") in adapters:
                    self.reply(400, {"error": {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}})
                else:
                    adapters[body["lora_name"]] = body["lora_path"]
                    self.reply(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.", "text/plain")
                return
            if body.get("model") not in names and body.get("model") not in adapters:
                self.reply(404, {"error": {"message": f"model {body.get('model')!r} not served", "type": "NotFound"}})
                return
            served[0] += 1
            time.sleep(args.reply_delay)
            chat = self.path.endswith("/chat/completions")
            base = {"id": "fake-1", "model": body["model"], "created": 0, "system_fingerprint": f"pid-{os.getpid()}"}
            if (body.get("kv_transfer_params") or {}).get("do_remote_decode"):  # a prefill for a remote decode
                base["kv_transfer_params"] = {"do_remote_prefill": True, "do_remote_decode": False,
                                              "remote_engine_id": f"engine-{args.port}", "remote_block_ids": [1, 2, 3],
                                              "remote_host": args.host, "remote_port": args.port}
            if body.get("stream"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for word in ("hello", " world"):
                    time.sleep(args.stream_interval)
                    delta = {"delta": {"content": word}} if chat else {"text": word}
                    chunk = {**base, "object": "chat.completion.chunk" if chat else "text_completion",
                             "choices": [{"index": 0, **delta, "finish_reason": None}]}
                    self._chunk(f"data: {json.dumps(chunk)}\n\n")
                self._chunk("data: [DONE]\n\n")
                self._chunk("")
                return
            choice = {"index": 0, "finish_reason": "stop",
                      **({"message": {"role": "assistant", "content": "hello world"}} if chat else {"text": "hello world"})}
            self.reply(200, {**base, "object": "chat.completion" if chat else "text_completion", "choices": [choice],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})

        def _chunk(self, text: str) -> None:
            data = text.encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
