{{ define "sglang-pd.namespaced.e364b9e3c86adcad" }}hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  qwen:
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "sglang-pd.plainNamespace" . }}
        port: 30000
        service: sglang-pd-qwen-decode
    health:
      path: /health
    metrics:
      kv_capacity: sglang:max_total_num_tokens
      kv_usage: sglang:token_usage
      path: /metrics
      running: sglang:num_running_reqs
      waiting: sglang:num_queue_reqs
    prefill:
      bootstrap_port: 8998
      discovery:
        kubernetes:
          namespace: {{ include "sglang-pd.plainNamespace" . }}
          port: 30000
          service: sglang-pd-qwen-prefill
      health:
        path: /health
      protocol: bootstrap
    served_name: Qwen/Qwen2.5-7B-Instruct
    strategy: prefix
version: 1
{{ end }}
