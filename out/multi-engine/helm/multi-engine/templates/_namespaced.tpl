{{ define "multi-engine.namespaced.967a591ed0824d09" }}hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  sglang-embed:
    aliases:
    - embed
    - embeddings
    - sentence-transformer
    discovery:
      kubernetes:
        namespace: {{ include "multi-engine.plainNamespace" . }}
        port: 30001
        service: multi-engine-sglang-embed
    health:
      path: /health
    metrics:
      kv_capacity: sglang:max_total_num_tokens
      kv_usage: sglang:token_usage
      path: /metrics
      running: sglang:num_running_reqs
      waiting: sglang:num_queue_reqs
    served_name: BAAI/bge-large-en-v1.5
    strategy: prefix
  tensorrt-codegen:
    aliases:
    - code-generation
    - codegen
    - programming
    discovery:
      kubernetes:
        namespace: {{ include "multi-engine.plainNamespace" . }}
        port: 8000
        service: multi-engine-tensorrt-codegen
    health:
      path: /v2/health/ready
    metrics:
      kv_usage: nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}
      path: /metrics
      port: 8002
      running: nv_trt_llm_request_metrics{request_type="active"}
      waiting: nv_trt_llm_request_metrics{request_type="waiting"}
    served_name: tensorrt-codegen
    strategy: prefix
  vllm-llama:
    aliases:
    - chat
    - llama-3.1-8b
    - text-generation
    discovery:
      kubernetes:
        namespace: {{ include "multi-engine.plainNamespace" . }}
        port: 8000
        service: multi-engine-vllm-llama
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
    served_name: meta-llama/Meta-Llama-3.1-8B-Instruct
    strategy: prefix
version: 1
{{ end }}
