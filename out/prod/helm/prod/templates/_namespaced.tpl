{{ define "prod.namespaced.532ff12601108ab3" }}auth:
  api_keys_file: /etc/stackc-router/keys/keys
hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  llama-70b:
    aliases:
    - llama-3.3-70b
    discovery:
      kubernetes:
        namespace: {{ include "prod.plainNamespace" . }}
        port: 8000
        service: prod-llama-70b
    health:
      path: /health
    metrics:
      kv_capacity: vllm:cache_config_info
      kv_capacity_labels:
      - block_size
      - num_gpu_blocks
      kv_usage: vllm:kv_cache_usage_perc
      path: /metrics
      running: vllm:num_requests_running
      waiting: vllm:num_requests_waiting
    served_name: meta-llama/Llama-3.3-70B-Instruct
    strategy: least_loaded
  llama-8b:
    aliases:
    - gpt-4o-mini
    - llama-3.1-8b
    discovery:
      kubernetes:
        namespace: {{ include "prod.plainNamespace" . }}
        port: 8000
        service: prod-llama-8b
    health:
      path: /health
    metrics:
      kv_capacity: vllm:cache_config_info
      kv_capacity_labels:
      - block_size
      - num_gpu_blocks
      kv_usage: vllm:kv_cache_usage_perc
      path: /metrics
      running: vllm:num_requests_running
      waiting: vllm:num_requests_waiting
    served_name: meta-llama/Llama-3.1-8B-Instruct
    strategy: prefix
version: 1
{{ end }}
