{{ define "engine-llamacpp.namespaced.3af7b7d1ae99f3c0" }}hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  qwen-small:
    aliases:
    - qwen-0.5b
    discovery:
      kubernetes:
        namespace: {{ include "engine-llamacpp.plainNamespace" . }}
        port: 8080
        service: engine-llamacpp-qwen-small
    health:
      path: /health
    metrics:
      path: /metrics
      running: llamacpp:requests_processing
      waiting: llamacpp:requests_deferred
    served_name: qwen-small
    strategy: prefix
    upstream_auth:
      api_key_file: /etc/stackc-router/upstream/qwen-small/qwen
version: 1
{{ end }}
