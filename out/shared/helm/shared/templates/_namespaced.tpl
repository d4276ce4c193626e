{{ define "shared.namespaced.c529375cc371f70d" }}hold:
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
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "shared.plainNamespace" . }}
        port: 8000
        service: shared-llama-70b
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
    strategy: prefix
  llama-8b:
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "shared.plainNamespace" . }}
        port: 8000
        service: shared-llama-8b
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
  qwen-14b:
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "shared.plainNamespace" . }}
        port: 8000
        service: shared-qwen-14b
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
    served_name: Qwen/Qwen2.5-14B-Instruct
    strategy: prefix
version: 1
{{ end }}
