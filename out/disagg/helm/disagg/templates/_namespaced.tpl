{{ define "disagg.namespaced.94c2de851de10ac6" }}hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  llama:
    aliases:
    - llama-3.1-8b
    discovery:
      kubernetes:
        namespace: {{ include "disagg.plainNamespace" . }}
        port: 8000
        service: disagg-llama-decode
    health:
      path: /health
    metrics:
      kv_capacity: vllm:cache_config_info
      kv_capacity_labels:
      - block_size
      - num_gpu_blocks
      kv_usage: vllm:kv_cache_usage_perc
      path: /metrics
      port: 8200
      running: vllm:num_requests_running
      waiting: vllm:num_requests_waiting
    prefill:
      discovery:
        kubernetes:
          namespace: {{ include "disagg.plainNamespace" . }}
          port: 8000
          service: disagg-llama-prefill
      health:
        path: /health
      protocol: kv_transfer_params
    served_name: meta-llama/Llama-3.1-8B-Instruct
    strategy: prefix
version: 1
{{ end }}
