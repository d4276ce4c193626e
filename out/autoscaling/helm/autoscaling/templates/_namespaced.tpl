{{ define "autoscaling.namespaced.00092f7eba926b85" }}hold:
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
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "autoscaling.plainNamespace" . }}
        port: 8000
        service: autoscaling-llama
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
    served_name: llama-3.1-8b
    strategy: prefix
  qwen:
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "autoscaling.plainNamespace" . }}
        port: 30000
        service: autoscaling-qwen
    health:
      path: /health
    metrics:
      kv_capacity: sglang:max_total_num_tokens
      kv_usage: sglang:token_usage
      path: /metrics
      running: sglang:num_running_reqs
      waiting: sglang:num_queue_reqs
    served_name: Qwen/Qwen2.5-7B-Instruct
    strategy: prefix
version: 1
{{ end }}
